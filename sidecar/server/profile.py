"""Profiling command: `orch.profile.run`, one GPU profiling session as a job (see `orch profile`).

The session's output is reported as `$/progress` messages while it runs; the result names the
local folder the trace, summary (and flame graph) were fetched into, and carries the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.server.core import OrchServer, Params, Report

if TYPE_CHECKING:
    from sidecar.results import ProfileResult


def params_model() -> type[Params]:
    """`orch.profile.run`'s parameters: the profiling request (strict, like every command's
    params) plus where to keep its files. Built at the first request: the request model comes
    with `sidecar.results`, which the language server does not import at start."""
    from sidecar.results import ProfileRequest

    class ProfileParams(ProfileRequest, Params):
        out: str | None = None  # local folder; default <project>/profiles

    return ProfileParams


def register(server: OrchServer) -> None:
    @server.orch_command("orch.profile.run", params_model)
    async def run(server: OrchServer, params: Any, report: Report) -> ProfileResult:
        from sidecar.results import ProfileRequest

        request = ProfileRequest(**params.model_dump(exclude={"out"}))
        root = Path(params.out) if params.out else None

        def show(chunk: str) -> None:
            last = chunk.strip().splitlines()[-1:] if chunk.strip() else []
            if last:
                report(last[0][:200], None)

        return await server.orch.profile(request, root, server.options.machine, on_output=show)
