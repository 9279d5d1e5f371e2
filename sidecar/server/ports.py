"""Port forwards: `orch.ports.list`, `orch.ports.add`, `orch.ports.remove` (127.0.0.1 only)."""

from __future__ import annotations

from pydantic import Field

from sidecar.results import PortForwardInfo, PortsResult
from sidecar.server.core import NoParams, OrchServer, Params, Report

Port = Field(ge=1, le=65535)


class AddParams(Params):
    local_port: int = Port
    remote_port: int | None = Field(default=None, ge=1, le=65535)
    remote_host: str = "127.0.0.1"


class RemoveParams(Params):
    local_port: int = Port


def register(server: OrchServer) -> None:
    def machine() -> str | None:
        return server.options.machine

    @server.orch_command("orch.ports.list", NoParams, read_only=True)
    async def list_ports(server: OrchServer, _: NoParams, report: Report) -> PortsResult:
        return await server.orch.ports_list(machine())

    @server.orch_command("orch.ports.add", AddParams)
    async def add(server: OrchServer, params: AddParams, report: Report) -> PortForwardInfo:
        return await server.orch.ports_add(
            params.local_port, params.remote_port, params.remote_host, machine()
        )

    @server.orch_command("orch.ports.remove", RemoveParams)
    async def remove(server: OrchServer, params: RemoveParams, report: Report) -> PortsResult:
        return await server.orch.ports_remove(params.local_port, machine())
