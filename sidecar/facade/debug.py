"""The facade's debugging and profiling of jobs.

A job run under debugpy with a local port forwarded to it (started, or attached to again),
the attach entry written into .vscode/launch.json, and a GPU profiling session run as a job
whose trace and summary are fetched. sidecar/debug/ and sidecar/profiling/ do the work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sidecar.errors import OrchError
from sidecar.facade.jobs import JobsFacade
from sidecar.results import DebugConfigResult, DebugSession, ProfileRequest, ProfileResult


class DebugFacade(JobsFacade):
    # -- debug ------------------------------------------------------------------------------
    async def debug_start(
        self,
        name: str,
        argv: Sequence[str],
        machine: str | None = None,
        env: Mapping[str, str] | None = None,
        replace: bool = False,
        snapshot: bool | None = None,
        say: Callable[[str], None] | None = None,
    ) -> DebugSession:
        """Run `argv` as job `name` under debugpy and forward a local port to it."""
        from sidecar.debug import service

        await self._debug_activity(machine)
        return await service.start(
            self.context(machine),
            self.jobs(machine),
            name,
            list(argv),
            env=dict(env or {}),
            replace=replace,
            snapshot=snapshot,
            say=say,
        )

    async def debug_attach(self, name: str, machine: str | None = None) -> DebugSession:
        """The attach session of a job already running under debugpy (forward restored)."""
        from sidecar.debug import service

        await self._debug_activity(machine)
        return await service.attach(self.context(machine), self.jobs(machine), name)

    async def _debug_activity(self, machine: str | None) -> None:
        """A debug session is activity for the machine's idle agent (best effort)."""
        from sidecar.idle.service import touch_activity

        with contextlib.suppress(OrchError):
            await touch_activity(self.context(machine))

    async def debug_config(
        self, name: str | None = None, machine: str | None = None
    ) -> DebugConfigResult:
        """Write (merge) the attach entry into .vscode/launch.json: for job `name`, or for a
        service listening on `[debug] remote_port`."""
        from sidecar.debug import service

        if name is None:
            configuration = await service.default_configuration(self.context(machine))
        else:
            configuration = (await self.debug_attach(name, machine)).configuration
        path = await asyncio.to_thread(service.write_launch_json, self.config.root, configuration)
        return DebugConfigResult(path=str(path), configuration=configuration)

    # -- profiling ---------------------------------------------------------------------------
    async def profile(
        self,
        request: ProfileRequest,
        local_root: Path | None = None,
        machine: str | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> ProfileResult:
        """Run a GPU profiling session as a job and fetch its trace and summary."""
        from sidecar.profiling import service

        root = local_root or Path(self.config.root) / "profiles"
        return await service.run(
            self.context(machine), self.jobs(machine), request, root, on_output
        )
