"""Machine commands: `orch.machine.up|down|terminate|status`, the picker's
`orch.machine.list`, `orch.machine.select` and `orch.machine.terminatePlan`.

Each runs in the orch agent: directly when the server is hosted there (the default), else
sent there (`server.via_agent`, `Orchestrator.agent_call`: its one connection per machine, no
asyncssh in the window's process); `ORCH_NO_AGENT=1` runs them in the server's process.
`up` is the long one: it reports each step as `$/progress` and stops when cancelled.
Up, down and terminate of one machine are serialised by the provider's lock, taken off the
event loop (an async file lock), so concurrent requests in this process wait instead of
deadlocking.

`select` changes the machine the editor's commands act on (status, jobs, sync, ports, debug
all read `server.options.machine`) inside the running sidecar: no restart, so nothing
long-lived of this process (job log streams, the status watcher) is dropped by a switch.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sidecar.errors import NotFound
from sidecar.server.core import NoParams, OrchServer, Params, Report

if TYPE_CHECKING:  # the result models load with the facade, at the first command
    from sidecar.results import MachineInfo, MachineList, TerminatePlan


class MachineParams(Params):
    machine: str | None = None
    force: bool = False  # down, terminate: go on even while jobs run there


class SelectParams(Params):
    machine: str  # "" for the project's default machine


class NameParams(Params):
    machine: str | None = None


def register(server: OrchServer) -> None:
    lifecycle = asyncio.Lock()

    def name(params: MachineParams | NameParams) -> str | None:
        return params.machine or server.options.machine

    @server.orch_command("orch.machine.up", MachineParams)
    async def up(server: OrchServer, params: MachineParams, report: Report) -> MachineInfo:
        async with lifecycle:
            if server.via_agent:  # each step of `up` comes back as a progress line
                return await server.orch.agent_call("up", name(params), progress=report)
            return await server.orch.up(name(params), progress=report)

    @server.orch_command("orch.machine.down", MachineParams)
    async def down(server: OrchServer, params: MachineParams, report: Report) -> MachineInfo:
        async with lifecycle:
            if server.via_agent:
                force = {"force": params.force}
                return await server.orch.agent_call("down", name(params), force)
            return await server.orch.down(name(params), force=params.force)

    @server.orch_command("orch.machine.terminate", MachineParams)
    async def terminate(server: OrchServer, params: MachineParams, report: Report) -> MachineInfo:
        # The client confirms first, showing orch.machine.terminatePlan.
        async with lifecycle:
            if server.via_agent:
                force = {"force": params.force}
                return await server.orch.agent_call("terminate", name(params), force)
            return await server.orch.down(name(params), terminate=True, force=params.force)

    @server.orch_command("orch.machine.terminatePlan", NameParams, read_only=True)
    async def terminate_plan(
        server: OrchServer, params: NameParams, report: Report
    ) -> TerminatePlan:
        if server.via_agent:
            return await server.orch.agent_call("terminate_preview", name(params))
        return await server.orch.terminate_preview(name(params))

    @server.orch_command("orch.machine.status", MachineParams, read_only=True)
    async def status(server: OrchServer, params: MachineParams, report: Report) -> MachineInfo:
        if server.via_agent:
            return await server.orch.agent_call("machine_status", name(params))
        return await server.orch.machine_status(name(params))

    @server.orch_command("orch.machine.list", NoParams, read_only=True)
    async def list_(
        server: OrchServer, params: NoParams, report: Report
    ) -> MachineList | dict[str, Any]:
        if server.via_agent:
            raw = await server.orch.agent_call("machines_overview")
            return {**raw, "selected": server.options.machine or raw["default"]}
        listed = await server.orch.machines_overview()
        listed.selected = server.options.machine or listed.default
        return listed

    @server.orch_command("orch.machine.select", SelectParams)
    async def select(server: OrchServer, params: SelectParams, report: Report) -> MachineInfo:
        chosen = params.machine.strip() or None
        known = server.orch.config.config.machine_names()
        if chosen is not None and chosen not in known:
            raise NotFound(
                f"unknown machine {chosen!r}", hint=f"known machines: {', '.join(known)}"
            )
        server.options.machine = chosen
        # Not read_only: the status watcher looks again at once and pushes the new machine.
        names = [server.orch.machine_name(chosen)]
        if server.via_agent:
            raw = await server.orch.agent_call("machines_overview", None, {"names": names})
            return raw["machines"][0]
        listed = await server.orch.machines_overview(names)
        return listed.machines[0]
