"""`orch.ssh.writeConfig`: renders the machine's Host block into orch's managed ssh config."""

from __future__ import annotations

from typing import Any

from sidecar.server.core import OrchServer, Params, Report


class WriteConfigParams(Params):
    machine: str | None = None


def register(server: OrchServer) -> None:
    @server.orch_command("orch.ssh.writeConfig", WriteConfigParams)
    async def write_config(
        server: OrchServer, params: WriteConfigParams, report: Report
    ) -> dict[str, Any]:
        machine = params.machine or server.options.machine
        path = await server.orch.write_ssh_config(machine)
        target = await server.orch.ssh_target(machine)
        return {"path": str(path), "hosts": [target.alias]}
