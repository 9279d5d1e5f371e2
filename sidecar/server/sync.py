"""Sync commands: `orch.sync.start|stop|now|status` for the project folder and its machine.

Start and now are long (a full reconcile first) and report how far it got as `$/progress`.
"""

from __future__ import annotations

from collections.abc import Callable

from sidecar.results import SyncStatus
from sidecar.server.core import NoParams, OrchServer, Report


def _percent(report: Report) -> Callable[[int], None]:
    return lambda percent: report(f"syncing files: {percent}%", percent)


def register(server: OrchServer) -> None:
    def machine() -> str | None:
        return server.options.machine

    @server.orch_command("orch.sync.start", NoParams)
    async def start(server: OrchServer, _: NoParams, report: Report) -> SyncStatus:
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
