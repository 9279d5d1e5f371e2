"""Idle commands: `orch.idle.status` and `orch.idle.keep` (the "Keep running" button of the
extension's warning notification resets the machine's idle timer); run in the orch agent
unless `ORCH_NO_AGENT=1`."""

from __future__ import annotations

from typing import Any

from sidecar.server.core import OrchServer, Params, Report


class IdleParams(Params):
    machine: str | None = None


def register(server: OrchServer) -> None:
    def name(params: IdleParams) -> str | None:
        return params.machine or server.options.machine

    @server.orch_command("orch.idle.status", IdleParams, read_only=True)
    async def status(server: OrchServer, params: IdleParams, report: Report) -> Any:
        if server.via_agent:
            return await server.orch.agent_call("idle_status", name(params))
        return await server.orch.idle_status(name(params))

    @server.orch_command("orch.idle.keep", IdleParams)
    async def keep(server: OrchServer, params: IdleParams, report: Report) -> Any:
        if server.via_agent:
            return await server.orch.agent_call("idle_keep", name(params))
        return await server.orch.idle_keep(name(params))
