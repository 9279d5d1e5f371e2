"""`orch.ssh.writeConfig`: writes orch's managed ssh config (a Host block per reachable
machine) and the user's Include line; the result names the file and the hosts."""

from __future__ import annotations

from sidecar.results import SshConfigResult
from sidecar.server.core import NoParams, OrchServer, Report


def register(server: OrchServer) -> None:
    @server.orch_command("orch.ssh.writeConfig", NoParams)
    async def write_config(server: OrchServer, _: NoParams, report: Report) -> SshConfigResult:
        return await server.orch.ssh_config_write()
