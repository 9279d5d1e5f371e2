"""`orch.debug.attachConfig`: the VS Code `debugpy` attach configuration for a job running
under debugpy (started with `orch debug NAME -- CMD`); its local port forward is restored
when needed. The extension's "Orch: Attach to job" debug provider hands it to VS Code."""

from __future__ import annotations

from typing import Any

from sidecar.server.core import OrchServer, Params, Report


class AttachParams(Params):
    name: str


def register(server: OrchServer) -> None:
    @server.orch_command("orch.debug.attachConfig", AttachParams)
    async def attach_config(
        server: OrchServer, params: AttachParams, report: Report
    ) -> dict[str, Any]:
        session = await server.orch.debug_attach(params.name, server.options.machine)
        return session.configuration
