"""Port forwards: `orch.ports.list`, `orch.ports.add`, `orch.ports.remove` (127.0.0.1 only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, StrictInt

from sidecar.server.core import NoParams, OrchServer, Params, Report

if TYPE_CHECKING:  # the result models load with the facade, at the first command
    from sidecar.results import PortForwardInfo, PortsResult

Port = Field(ge=1, le=65535)


class AddParams(Params):
    local_port: StrictInt = Port
    remote_port: StrictInt | None = Field(default=None, ge=1, le=65535)
    remote_host: str = "127.0.0.1"
    reverse: bool = Field(
        default=False, description="the machine's remote_port reaches local_port here"
    )


class RemoveParams(Params):
    local_port: StrictInt = Field(
        ge=1, le=65535, description="the local port (with reverse: the machine's port)"
    )
    reverse: bool = False


def register(server: OrchServer) -> None:
    def machine() -> str | None:
        return server.options.machine

    @server.orch_command("orch.ports.list", NoParams, read_only=True)
    async def list_ports(server: OrchServer, _: NoParams, report: Report) -> PortsResult:
        return await server.orch.ports_list(machine())

    @server.orch_command("orch.ports.add", AddParams)
    async def add(server: OrchServer, params: AddParams, report: Report) -> PortForwardInfo:
        return await server.orch.ports_add(
            params.local_port, params.remote_port, params.remote_host, machine(), params.reverse
        )

    @server.orch_command("orch.ports.remove", RemoveParams)
    async def remove(server: OrchServer, params: RemoveParams, report: Report) -> PortsResult:
        return await server.orch.ports_remove(params.local_port, machine(), params.reverse)
