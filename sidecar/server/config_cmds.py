"""Config commands: `orch.config.init` writes a starter orch.toml (never overwrites)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sidecar.server.core import NoParams, OrchServer, Report

if TYPE_CHECKING:
    from sidecar.results import ConfigInitResult


def register(server: OrchServer) -> None:
    @server.orch_command("orch.config.init", NoParams)
    async def init(server: OrchServer, _: NoParams, report: Report) -> ConfigInitResult:
        from sidecar.results import ConfigInitResult

        path, created = server.orch.config_init()
        return ConfigInitResult(path=str(path), created=created)
