"""Profiling command: `orch.profile.run`, one GPU profiling session as a job (see `orch profile`).

The session's output is reported as `$/progress` messages while it runs; the result names the
local folder the trace, summary (and flame graph) were fetched into, and carries the summary.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from sidecar.results import ProfileRequest, ProfileResult
from sidecar.server.core import OrchServer, Params, Report


class ProfileParams(Params):
    model: str = Field(default="birefnet", pattern="^(birefnet|sam2)$")
    requests: int = Field(default=4, ge=1, le=10_000)
    batch_size: int | None = Field(default=None, ge=1, le=256)
    lanes: int | None = Field(default=None, ge=1, le=64)
    size: int = Field(default=512, ge=16, le=8192)
    sequential: bool = False
    random_weights: bool = False
    py_spy: bool = False
    extra: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    out: str | None = None  # local folder; default <project>/profiles


def register(server: OrchServer) -> None:
    @server.orch_command("orch.profile.run", ProfileParams)
    async def run(server: OrchServer, params: ProfileParams, report: Report) -> ProfileResult:
        request = ProfileRequest(**params.model_dump(exclude={"out"}))
        root = Path(params.out) if params.out else None

        def show(chunk: str) -> None:
            last = chunk.strip().splitlines()[-1:] if chunk.strip() else []
            if last:
                report(last[0][:200], None)

        return await server.orch.profile(request, root, server.options.machine, on_output=show)
