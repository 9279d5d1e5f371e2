"""Config commands: `orch.config.init` writes a starter orch.toml (never overwrites)."""

from __future__ import annotations

from sidecar.results import ConfigInitResult
from sidecar.server.core import NoParams, OrchServer, Report


def register(server: OrchServer) -> None:
    @server.orch_command("orch.config.init", NoParams)
    async def init(server: OrchServer, _: NoParams, report: Report) -> ConfigInitResult:
        path, created = server.orch.config_init()
        return ConfigInitResult(path=str(path), created=created)
