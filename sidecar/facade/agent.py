"""The facade's calls to the local orch agent (issue 20).

The agent keeps one connection per machine and watches every project's status; the language
server and the CLI are its clients through these methods: its status (pushed, or read once),
one allow-listed facade method run there (`agent_call`; `run_call` runs it here instead with
`ORCH_NO_AGENT=1` or other settings than the agent's), a job's log followed there (going on
after the agent's own crash), and starting it again or poking it. sidecar/agent_client.py
and sidecar/agent_calls.py speak its protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from sidecar.errors import OrchError
from sidecar.facade.jobs import JobsFacade
from sidecar.machines.base import Progress

if TYPE_CHECKING:
    from sidecar.agent_client import AgentPaths, AgentUnavailable
    from sidecar.app import Orchestrator


class AgentFacade(JobsFacade):
    def revive_agent(self) -> bool:
        """Start the orch agent again if it died with syncs or forwards to bring back."""
        from sidecar import agent_client as client

        if not client.enabled():
            return False
        try:
            return client.revive_if_wanted(self.layout)
        except client.AgentUnavailable:
            return False  # the sync's status says it ended; nothing else to do here

    # The orch agent's watched status, for the language server (a thin client of it).
    STATUS_SILENCE_S = 15.0  # the agent sends a heartbeat every few seconds

    def agent_enabled(self) -> bool:
        from sidecar import agent_client

        return agent_client.enabled()

    async def status_events(self, machine: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """The project's `orch status` as the agent pushes it (the current one first, then
        every change); the agent is started (or an older one replaced) first. Ends when the
        agent goes away; raises OrchError when it cannot be reached."""
        from sidecar import agent_calls, agent_client

        try:
            paths, _ = await asyncio.to_thread(agent_client.ensure, self.layout)
            request = {"op": "subscribe", "cwd": str(self.cwd), "machine": machine}
            async for event in agent_calls.subscribe(paths, request, self.STATUS_SILENCE_S):
                if event.get("event") == "status":
                    yield event["status"]
        except agent_client.AgentUnavailable as exc:
            raise OrchError(str(exc), hint="it is started again by the next request") from None

    async def agent_status(self, machine: str | None = None, fresh: bool = False) -> dict[str, Any]:
        """The project's status from the agent's watch (`fresh`: read anew there)."""
        from sidecar import agent_client

        request = {"op": "status", "cwd": str(self.cwd), "machine": machine, "fresh": fresh}
        request["lenient"] = True  # an unknown machine is a status saying so, not an error
        timeout = 4 * self.read_timeout_s
        reply = await self._send_to_agent(
            lambda paths: agent_client.acall(paths, request, timeout=timeout),
            not_sent=agent_client.AgentUnavailable,
            hint="it is started again by the next request",
        )
        return dict(reply["status"])

    async def agent_call(
        self,
        method: str,
        machine: str | None = None,
        params: dict[str, Any] | None = None,
        progress: Progress | None = None,
        *,
        env: bool = False,
    ) -> Any:
        """Run facade `method` in the orch agent, over its one connection per machine (the
        language server's commands); its result as JSON, its OrchError raised here as the
        same class. The agent is started when none answers (the request was not sent then);
        one lost after it was sent is an error, not sent twice (it may have run). `env`:
        only if the agent runs with this process's settings (else `EnvDiffers`)."""
        from sidecar import agent_calls
        from sidecar import agent_client as client

        request: dict[str, Any] = {
            "op": "call",
            "project": str(self.cwd),
            "machine": machine,
            "method": method,
            "params": params or {},
        }
        if env:
            request["env"] = client.env_key()
        timeout = agent_calls.CALL_TIMEOUTS_S[method] + agent_calls.CALL_GRACE_S
        reply = await self._send_to_agent(
            lambda paths: agent_calls.arequest(paths, request, timeout=timeout, progress=progress),
            not_sent=agent_calls.AgentDown,
            what=method,
            hint="see `orch status` for what happened, then try again",
        )
        return reply.get("result")

    async def _send_to_agent(
        self,
        send: Callable[[AgentPaths], Awaitable[dict[str, Any]]],
        *,
        not_sent: type[AgentUnavailable],
        hint: str,
        what: str | None = None,
    ) -> dict[str, Any]:
        """One request to the orch agent by `send`, its reply. When `send` raises `not_sent`,
        the agent is started (or a dying one replaced) and it is sent once more: agent_call
        passes AgentDown (nothing took the request; one lost after it was sent may have run,
        so it is never sent twice), agent_status any AgentUnavailable (a status read is safe
        to repeat). The agent still unavailable is an OrchError saying why (after "`what`: "
        when given) with `hint`."""
        from sidecar import agent_client as client

        paths = client.agent_paths(self.layout)
        try:
            try:
                return await send(paths)
            except not_sent:  # not running (or dying): start it, once
                paths, _ = await asyncio.to_thread(client.ensure, self.layout)
                return await send(paths)
        except client.AgentUnavailable as exc:
            raise OrchError(f"{what}: {exc}" if what is not None else str(exc), hint=hint) from None

    async def run_call(
        self,
        method: str,
        machine: str | None = None,
        params: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> Any:
        """One method of the orch agent's allow-list (`sidecar.agent.calls.CALLS`, checked
        parameters, bounded): run in the agent (its result as JSON) or, with
        `ORCH_NO_AGENT=1`, here (as the facade returns it). The CLI's one switch
        (`sidecar.cli.dispatch` turns either into the same result model)."""
        if self.agent_enabled():
            from sidecar import agent_calls

            try:
                return await self.agent_call(method, machine, params, progress, env=True)
            except agent_calls.EnvDiffers:
                pass  # the agent has other settings (AWS_PROFILE…): run it here instead
        from sidecar.agent.calls import invoke

        orch = cast("Orchestrator", self)  # an area of the facade runs only as part of it
        return await invoke(orch, method, machine, params or {}, progress or (lambda _m: None))

    async def run_logs(
        self,
        name: str,
        tail: int | None = None,
        follow: bool = False,
        machine: str | None = None,
        on: str | None = None,
    ) -> AsyncIterator[str]:
        """`jobs_stream` as `run_call` runs a call: streamed by the orch agent (which goes on
        after its own crash), or here with `ORCH_NO_AGENT=1` or other settings than the
        agent's."""
        if self.agent_enabled():
            from sidecar import agent_calls

            stream = self.agent_follow(
                name, tail, machine, follow=follow, on=on, archived=True, env=True
            )
            try:
                async for chunk in stream:
                    yield chunk
                return
            except agent_calls.EnvDiffers:  # (said before the first chunk)
                pass
        async for chunk in self.jobs_stream(name, tail, follow, machine, on):
            yield chunk

    async def agent_follow(
        self,
        name: str,
        tail: int | None = None,
        machine: str | None = None,
        *,
        follow: bool = True,
        on: str | None = None,
        archived: bool = False,
        env: bool = False,
    ) -> AsyncIterator[str]:
        """`jobs_follow` (with `archived`: `jobs_stream`, as `orch logs` reads) run in the orch
        agent: the job's log as text chunks until it ends, over the agent's connection (the
        language server's `orch/log`, `orch logs`). If the agent dies mid-stream a new one
        goes on from the byte the last chunk ended at (`agent_calls.follow_log`). `env`:
        only with this process's settings (else EnvDiffers, before any chunk)."""
        from sidecar import agent_calls
        from sidecar import agent_client as client

        request = agent_calls.follow_request(
            str(self.cwd), name, tail, machine, follow=follow, on=on, archived=archived, env=env
        )
        try:
            async for text in agent_calls.follow_log(self.layout, request, self.STATUS_SILENCE_S):
                yield text
        except client.AgentUnavailable as exc:
            raise OrchError(str(exc), hint=agent_calls.FOLLOW_HINT.format(name=name)) from None

    def poke_agent(self) -> None:
        """Tell a running agent that something may have changed (its status reads anew)."""
        from sidecar import agent_client as client

        paths = client.agent_paths(self.layout)
        if client.enabled() and client.alive(paths):
            with contextlib.suppress(client.AgentUnavailable, OSError, ValueError):
                client.call(paths, {"op": "poke"}, timeout=1.0)
