"""Machine commands: `orch.machine.up`, `orch.machine.down`, `orch.machine.status`.

`up` is the long one: it reports each step as `$/progress` and stops when cancelled.
Up and down of one machine are serialised by the provider's lock, taken off the event loop
(an async file lock), so concurrent requests in this process wait instead of deadlocking.
"""

from __future__ import annotations

import asyncio

from sidecar.results import MachineInfo
from sidecar.server.core import OrchServer, Params, Report


class MachineParams(Params):
    machine: str | None = None
    force: bool = False  # down: stop even while jobs run there


def register(server: OrchServer) -> None:
    lifecycle = asyncio.Lock()

    def name(params: MachineParams) -> str | None:
        return params.machine or server.options.machine

    @server.orch_command("orch.machine.up", MachineParams)
    async def up(server: OrchServer, params: MachineParams, report: Report) -> MachineInfo:
        async with lifecycle:
            return await server.orch.up(name(params), progress=report)

    @server.orch_command("orch.machine.down", MachineParams)
    async def down(server: OrchServer, params: MachineParams, report: Report) -> MachineInfo:
        async with lifecycle:
            return await server.orch.down(name(params), force=params.force)

    @server.orch_command("orch.machine.status", MachineParams, read_only=True)
    async def status(server: OrchServer, params: MachineParams, report: Report) -> MachineInfo:
        return await server.orch.machine_status(name(params))
