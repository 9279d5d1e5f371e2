"""Config commands: `orch.config.init` writes a starter orch.toml (never overwrites)."""

from __future__ import annotations

from pydantic import BaseModel

from sidecar.server.core import NoParams, OrchServer, Report


class ConfigInitResult(BaseModel):
    path: str
    created: bool  # False: an orch.toml was there already (left as it was)


def register(server: OrchServer) -> None:
    @server.orch_command("orch.config.init", NoParams)
    async def init(server: OrchServer, _: NoParams, report: Report) -> ConfigInitResult:
        path, created = server.orch.config_init()
        return ConfigInitResult(path=str(path), created=created)
