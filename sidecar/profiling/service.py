"""`orch profile`: one profiling session as a job, its files fetched back.

The job runs `<[gpu] python> -m gpu.profiling … --out ~/logs/<job>/profile` (see docs/gpu.md
for that contract) in the project folder on the machine. Its output — ending with the summary
table — is streamed while it runs; then `trace.json`, `summary.json` (and an Nsight Systems
report, and the py-spy flame graph `flame.svg` with `py_spy`, when they were made) are copied
over SFTP into a local folder.
"""

from __future__ import annotations

import json
import posixpath
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from sidecar.errors import OrchError

if TYPE_CHECKING:
    from sidecar.context import MachineContext
    from sidecar.jobs.backend import JobBackend


# What a session leaves in its --out folder and is brought back: trace.json, summary.json, an
# Nsight Systems report, the py-spy flame graph.
FETCHED = (".json", ".nsys-rep", ".svg")


class ProfileRequest(BaseModel):
    model: str = Field(default="birefnet", pattern="^(birefnet|sam2)$")
    requests: int = Field(default=4, ge=1, le=10_000)
    batch_size: int | None = Field(default=None, ge=1, le=256)
    lanes: int | None = Field(default=None, ge=1, le=64)
    size: int = Field(default=512, ge=16, le=8192)
    sequential: bool = False
    random_weights: bool = False
    py_spy: bool = False  # also record a py-spy flame graph (flame.svg) of the workload
    extra: list[str] = Field(default_factory=list)  # passed through to gpu.profiling
    env: dict[str, str] = Field(default_factory=dict)


class ProfileResult(BaseModel):
    job: str
    local_dir: str
    files: list[str]
    summary: dict[str, Any]
    table: str = ""  # the summary table the session printed (its output from "profile:" on)


def summary_table(output: str) -> str:
    """The table at the end of a session's output: from its last line starting "profile:"."""
    start = output.rfind("\nprofile: ")
    start = start + 1 if start >= 0 else (0 if output.startswith("profile: ") else -1)
    return output[start:].strip() if start >= 0 else ""


def profiling_argv(ctx: MachineContext, req: ProfileRequest, out_dir: str) -> list[str]:
    gpu = ctx.config.config.gpu
    argv = [
        gpu.python,
        "-m",
        "gpu.profiling",
        "--model",
        req.model,
        "--requests",
        str(req.requests),
        "--batch-size",
        str(req.batch_size or gpu.batch_size),
        "--lanes",
        str(req.lanes or gpu.streams),
        "--size",
        str(req.size),
        "--memory-fraction",
        str(gpu.memory_fraction),
        "--out",
        out_dir,
    ]
    if req.sequential:
        argv.append("--sequential")
    if req.random_weights:
        argv.append("--random-weights")
    if req.py_spy:
        argv += ["--py-spy", "on"]
    if gpu.birefnet_checkpoint and req.model == "birefnet":
        argv += ["--birefnet-weights", gpu.birefnet_checkpoint]
    if req.model == "sam2":
        argv += ["--sam2-config", gpu.sam2_config]
        if gpu.sam2_checkpoint:
            argv += ["--sam2-weights", gpu.sam2_checkpoint]
    return [*argv, *req.extra]


async def run(
    ctx: MachineContext,
    jobs: JobBackend,
    req: ProfileRequest,
    local_root: Path,
    on_output: Callable[[str], None] | None = None,
) -> ProfileResult:
    name = f"profile-{req.model}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    target = await ctx.target()
    home = (await ctx.pool.run(target, 'printf %s "$HOME"', check=True)).stdout
    out_dir = posixpath.join(home, "logs", name, "profile")
    workdir = await jobs.prepare_code(None)
    await jobs.run(name, profiling_argv(ctx, req, out_dir), req.env, workdir=workdir)
    output: list[str] = []
    async for chunk in jobs.stream(name, tail=None, follow=True):
        output.append(chunk)
        if on_output:
            on_output(chunk)
    job = {j.name: j for j in await jobs.status()}.get(name)
    if job is None or job.state != "succeeded":
        tail = (await jobs.logs(name, tail=15)).strip()
        state = "vanished" if job is None else f"{job.state} (exit {job.exit_code})"
        raise OrchError(
            f"the profiling job {name} {state}:\n{tail}",
            hint=f"full output: orch logs {name}; see docs/gpu.md for the options",
        )
    local_dir = local_root / name
    files = await _fetch(ctx, out_dir, local_dir)
    summary = json.loads((local_dir / "summary.json").read_text())
    table = summary_table("".join(output))
    return ProfileResult(
        job=name, local_dir=str(local_dir), files=files, summary=summary, table=table
    )


async def _fetch(ctx: MachineContext, out_dir: str, local_dir: Path) -> list[str]:
    conn = await ctx.pool.connection(await ctx.target())
    local_dir.mkdir(parents=True, exist_ok=True)
    fetched = []
    async with conn.start_sftp_client() as sftp:
        for name in await sftp.listdir(out_dir):
            if name.endswith(FETCHED):
                await sftp.get(posixpath.join(out_dir, name), str(local_dir / name))
                fetched.append(str(local_dir / name))
    if not any(f.endswith("summary.json") for f in fetched):
        raise OrchError(f"the profiling job wrote no summary.json in {out_dir}")
    return sorted(fetched)
