"""Sync commands: `orch.sync.start|stop|now|status` for the project folder and its machine.

Start and now are long (a full reconcile first) and report how far it got as `$/progress`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sidecar.server.core import NoParams, OrchServer, Report

if TYPE_CHECKING:  # the result models load with the facade, at the first command
    from sidecar.results import SyncStatus


def _percent(report: Report) -> Callable[[int], None]:
    return lambda percent: report(f"syncing files: {percent}%", percent)


def register(server: OrchServer) -> None:
    def machine() -> str | None:
        return server.options.machine

    @server.orch_command("orch.sync.start", NoParams)
    async def start(server: OrchServer, _: NoParams, report: Report) -> SyncStatus:
        # In the editor, "start" means "make sure it runs": already running is not an error.
        current = await server.orch.sync_status(machine())
        if current.owner_pid is not None:
            current.detail = f"sync already runs ({current.owner}, pid {current.owner_pid})"
            return current
        return await server.orch.sync_start(machine=machine(), progress=_percent(report))

    @server.orch_command("orch.sync.stop", NoParams)
    async def stop(server: OrchServer, _: NoParams, report: Report) -> SyncStatus:
        return await server.orch.sync_stop(machine())

    @server.orch_command("orch.sync.now", NoParams)
    async def now(server: OrchServer, _: NoParams, report: Report) -> SyncStatus:
        return await server.orch.sync_now(machine(), progress=_percent(report))

    @server.orch_command("orch.sync.status", NoParams, read_only=True)
    async def status(server: OrchServer, _: NoParams, report: Report) -> SyncStatus:
        return await server.orch.sync_status(machine())
