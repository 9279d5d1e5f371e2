"""The facade's `orch status`: one project's machine, forwards, sync, jobs, idle agent, cost
and queues in one answer.

The status composes several areas (which is why it is the facade's, not a service's), reads
each remote part within `read_timeout_s` (a silent machine is Unreachable, never a hang),
and says what it could not read instead of failing: an orch.toml with errors is a status
listing its problems (`config_problems`), an unknown machine a status saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from remote_config.jobs import JobInfo
from sidecar.errors import ConfigFileError, OrchError, Unreachable
from sidecar.facade.machines import MachinesFacade
from sidecar.facade.sync import SyncFacade
from sidecar.machines.base import MachineInfo
from sidecar.results import ConfigProblemInfo, ConfigState, OrchStatus, PortForwardInfo


def config_problems(exc: ConfigFileError) -> list[ConfigProblemInfo]:
    return [
        ConfigProblemInfo(file=p.file, line=p.line, column=p.column, path=p.path, message=p.message)
        for p in exc.problems
    ]


class StatusFacade(MachinesFacade, SyncFacade):
    async def status(self, machine: str | None = None) -> OrchStatus:
        try:
            file = self.config.path
        except ConfigFileError as exc:
            # Nothing can be looked up without a valid config; say so instead of failing.
            problems = config_problems(exc)
            return OrchStatus(
                machine=MachineInfo(
                    name=machine or "?", kind="?", state="unknown", detail="orch.toml has errors"
                ),
                config=ConfigState(file=problems[0].file if problems else None, problems=problems),
            )
        try:
            info = await self._bounded(self.machine_status(machine), "the machine's state")
        except OrchError as exc:  # an unknown machine (the orch.machine setting)…: say it
            return OrchStatus(
                machine=MachineInfo(
                    name=machine or "?", kind="?", state="unknown", detail=exc.message
                ),
                config=ConfigState(file=file, machines=self.config.config.machine_names()),
            )
        ports: list[PortForwardInfo] = []
        with contextlib.suppress(OrchError):  # a machine without a known alias has none
            ports = (await self.ports_list(machine)).ports
        sync = await self.sync_status(machine)
        jobs: list[JobInfo] = []
        idle = None
        if info.state != "running":
            note = "jobs unknown until the machine is up (orch up)"
            info.detail = f"{info.detail}; {note}" if info.detail else note
        else:
            with contextlib.suppress(OrchError):  # before the jobs: it marks them
                await self._bounded(self._interruption(machine, info), "the interruption check")
            try:
                jobs = await self._bounded(self.jobs_status(machine), "the job list")
            except OrchError as exc:  # the machine still shows; say why its jobs do not
                info.detail = f"jobs unavailable: {exc.message}"
            else:
                from sidecar.debug.service import drop_ended_forwards

                with contextlib.suppress(OrchError):
                    ended = drop_ended_forwards(self.context(machine), jobs, ports)
                    if await self._bounded(ended, "the debug forwards"):
                        ports = (await self.ports_list(machine)).ports
            with contextlib.suppress(OrchError):
                idle = await self._bounded(self.idle_status(machine), "the idle agent's state")
        jobs += await self._backend_jobs(machine)
        queues = await self._queues()
        return OrchStatus(
            machine=info,
            cost=await self._spend_of(info),
            jobs=jobs,
            ports=ports,
            sync=sync,
            idle=idle,
            queues=queues,
            config=ConfigState(file=file, machines=self.config.config.machine_names()),
        )

    async def _bounded(self, coro: Any, what: str) -> Any:
        """One remote read of `orch status`, given up after `read_timeout_s`: a machine that
        keeps its connection open without answering is Unreachable, never a hang."""
        timeout = self.read_timeout_s
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            raise Unreachable(
                f"unreachable: no answer for {what} within {timeout:g} s",
                hint="is the machine up and its network path open? try: orch up",
            ) from None

    async def _interruption(self, machine: str | None, info: MachineInfo) -> None:
        """Check the running machine for a platform interruption notice (an EC2 spot
        instance's 2-minute warning): shown on the machine, recorded there for its jobs."""
        from remote_config.interruption import describe, parse_check

        check = self.provider(machine).interruption_check()
        if check is None:
            return
        with contextlib.suppress(OrchError):
            notice = parse_check(await self.context(machine).remote_text(check)).current
            if notice is not None:
                info.interruption = notice
                info.detail = (
                    f"{describe(notice)}; {info.detail}" if info.detail else describe(notice)
                )
