"""Debugging: `orch.debug.start` runs a job under debugpy (like `orch debug NAME -- CMD`) and
returns its attach configuration; `orch.debug.attachConfig` returns the configuration of a
job already waiting, restoring its local port forward when needed. The extension's "Orch:
Debug Job…" command and "Orch: Attach to job" debug provider hand them to VS Code."""

from __future__ import annotations

import shlex
from typing import Any

from pydantic import Field

from sidecar.server.core import OrchServer, Params, Report


class AttachParams(Params):
    name: str


class StartParams(Params):
    name: str
    command: str | list[str]
    env: dict[str, str] = Field(default_factory=dict)
    replace: bool = False
    snapshot: bool | None = None


def register(server: OrchServer) -> None:
    @server.orch_command("orch.debug.attachConfig", AttachParams)
    async def attach_config(
        server: OrchServer, params: AttachParams, report: Report
    ) -> dict[str, Any]:
        session = await server.orch.debug_attach(params.name, server.options.machine)
        return session.configuration

    @server.orch_command("orch.debug.start", StartParams)
    async def start(server: OrchServer, params: StartParams, report: Report) -> dict[str, Any]:
        argv = shlex.split(params.command) if isinstance(params.command, str) else params.command
        session = await server.orch.debug_start(
            params.name,
            argv,
            machine=server.options.machine,
            env=params.env,
            replace=params.replace,
            snapshot=params.snapshot,
            say=report,
        )
        return session.model_dump(mode="json")
