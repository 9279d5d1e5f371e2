"""`orch.ssh.writeConfig`: writes orch's managed ssh config (a Host block per reachable
machine) and the user's Include line; the result names the file and the hosts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.server.core import NoParams, OrchServer, Report

if TYPE_CHECKING:  # the result models load with the facade, at the first command
    from sidecar.results import SshConfigResult


def register(server: OrchServer) -> None:
    @server.orch_command("orch.ssh.writeConfig", NoParams)
    async def write_config(server: OrchServer, _: NoParams, report: Report) -> SshConfigResult:
        if server.via_agent:
            return await server.orch.agent_call("ssh_config_write")
        return await server.orch.ssh_config_write()
