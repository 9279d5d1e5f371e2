"""Job commands: `orch.jobs.run|status|logs|follow|unfollow|stop|restart|rm`.

Every command runs in the orch agent: directly when the server is hosted there (the default),
else sent there (`server.via_agent`: `Orchestrator.agent_call`, and `agent_follow` for the log
stream, over its one connection per machine); `ORCH_NO_AGENT=1` runs them in this process.
Jobs act on the machine the client named at start
(`initializationOptions.machine`, else the project's default). `follow` streams a job's log
as `orch/log` notifications from a task per job, which ends with the job, on `unfollow`, or
when the same job is followed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from pydantic import Field

from sidecar.errors import OrchError
from sidecar.server.core import NoParams, OrchServer, Params, Report

log = logging.getLogger(__name__)

LOG_NOTIFICATION = "orch/log"


class RunParams(Params):
    name: str
    command: str | list[str]
    env: dict[str, str] | None = None
    replace: bool = False


class NameParams(Params):
    name: str


class LogsParams(Params):
    name: str
    tail: int | None = Field(default=None, ge=0)


class RemoveParams(Params):
    name: str
    purge: bool = False


class Followers:
    """One log-streaming task per followed job."""

    def __init__(self, server: OrchServer) -> None:
        self.server = server
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def follow(self, name: str, tail: int | None) -> None:
        await self.unfollow(name)
        machine = self.server.options.machine
        if self.server.via_agent:  # streamed by the agent, over its one connection
            stream = self.server.orch.agent_follow(name, tail, machine)
        else:
            stream = self.server.orch.jobs_follow(name, tail=tail, machine=machine)
        self.tasks[name] = asyncio.create_task(self._pump(name, stream), name=f"follow-{name}")

    async def unfollow(self, name: str) -> bool:
        task = self.tasks.pop(name, None)
        if task is None:
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    async def close(self) -> None:
        for name in list(self.tasks):
            await self.unfollow(name)

    async def _pump(self, name: str, stream: Any) -> None:
        try:
            async for chunk in stream:
                self.server.protocol.notify(LOG_NOTIFICATION, {"name": name, "text": chunk})
        except OrchError as exc:
            log.warning("following job %s stopped: %s", name, exc.message)
            note = f"\n[orch: the log stream stopped: {exc.message}]\n"
            self.server.protocol.notify(LOG_NOTIFICATION, {"name": name, "text": note})
        finally:
            if self.tasks.get(name) is asyncio.current_task():
                del self.tasks[name]


def register(server: OrchServer, followers: Followers) -> None:
    def machine() -> str | None:
        return server.options.machine

    @server.orch_command("orch.jobs.run", RunParams)
    async def run(server: OrchServer, params: RunParams, report: Report) -> Any:
        if server.via_agent:
            return await server.orch.agent_call("jobs_run", machine(), params.model_dump())
        return await server.orch.jobs_run(
            params.name, params.command, params.env, replace=params.replace, machine=machine()
        )

    @server.orch_command("orch.jobs.status", NoParams, read_only=True)
    async def status(server: OrchServer, _: NoParams, report: Report) -> dict[str, Any]:
        if server.via_agent:
            return {"jobs": await server.orch.agent_call("jobs_status", machine())}
        jobs = await server.orch.jobs_status(machine())
        return {"jobs": [job.model_dump(mode="json") for job in jobs]}

    @server.orch_command("orch.jobs.logs", LogsParams, read_only=True)
    async def logs(server: OrchServer, params: LogsParams, report: Report) -> dict[str, Any]:
        if server.via_agent:
            text = await server.orch.agent_call("jobs_logs", machine(), params.model_dump())
        else:
            text = await server.orch.jobs_logs(params.name, params.tail, machine())
        return {"name": params.name, "text": text}

    @server.orch_command("orch.jobs.follow", LogsParams)
    async def follow(server: OrchServer, params: LogsParams, report: Report) -> dict[str, Any]:
        # Unknown jobs fail here, as a JSON-RPC error, rather than later in the stream.
        # (jobs_info finds the job on the machine or on the backend that ran it.)
        if server.via_agent:
            await server.orch.agent_call("jobs_info", machine(), {"name": params.name})
        else:
            await server.orch.jobs_info(params.name, machine())
        await followers.follow(params.name, params.tail)
        return {"name": params.name}

    @server.orch_command("orch.jobs.unfollow", NameParams)
    async def unfollow(server: OrchServer, params: NameParams, report: Report) -> dict[str, Any]:
        await followers.unfollow(params.name)
        return {"name": params.name}

    @server.orch_command("orch.jobs.stop", NameParams)
    async def stop(server: OrchServer, params: NameParams, report: Report) -> Any:
        if server.via_agent:
            return await server.orch.agent_call("jobs_stop", machine(), params.model_dump())
        return await server.orch.jobs_stop(params.name, machine())

    @server.orch_command("orch.jobs.restart", NameParams)
    async def restart(server: OrchServer, params: NameParams, report: Report) -> Any:
        if server.via_agent:
            return await server.orch.agent_call("jobs_restart", machine(), params.model_dump())
        return await server.orch.jobs_restart(params.name, machine())

    @server.orch_command("orch.jobs.rm", RemoveParams)
    async def remove(server: OrchServer, params: RemoveParams, report: Report) -> dict[str, Any]:
        await followers.unfollow(params.name)
        if server.via_agent:
            await server.orch.agent_call("jobs_rm", machine(), params.model_dump())
        else:
            await server.orch.jobs_rm(params.name, params.purge, machine())
        return {"name": params.name}
