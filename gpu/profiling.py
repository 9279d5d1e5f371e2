"""Profiling sessions: a workload under torch.profiler (+ Nsight Systems when present).

`python -m gpu.profiling --model birefnet --requests 4 --batch-size 4 --lanes 4 --out DIR`
builds the engine, runs one warm-up batch, then N batches under torch.profiler with CPU (and,
on a GPU, CUDA) activities. Each batch is a `batch{r}` range and each lane's micro-batch a
`lane{l}/item{i}` range, both as `record_function` labels and NVTX ranges (no-ops without
CUDA). Afterwards — never on the request path — it writes:

  DIR/trace.json     Chrome trace: open in https://ui.perfetto.dev or chrome://tracing
  DIR/summary.json   throughput, per-lane busy time and overlap, top operators, peak memory
  DIR/nsys.nsys-rep  Nsight Systems capture of the same workload (CUDA, cuDNN, cuBLAS, NVTX,
                     OS runtime), when `nsys` is on PATH
  DIR/flame.svg      py-spy flame graph of the same workload (`--py-spy`), when py-spy is
                     installed (next to this Python or on PATH)

and prints the summary table (`render_summary_table`). This is the entry point the
`orch profile` command runs as a job on the remote and whose two files it brings back.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpu.cli_args import add_engine_args, engine_config_from_args
from gpu.device import (
    allocator_config,
    configure_allocator,
    device_info,
    memory_stats,
    nvtx_range,
    require_torch,
)
from gpu.engine import Engine, EngineConfig
from gpu.errors import GpuServiceError
from gpu.trace_summary import lane_summary, load_trace_events, render_summary_table, top_operators
from gpu.workload import batch_runner, make_batch

# What Nsight Systems traces: CUDA API + kernels, cuDNN and cuBLAS calls (convolutions and
# matmuls of both models), NVTX ranges (batch/lane labels) and OS runtime calls.
NSYS_TRACE = "cuda,cudnn,cublas,nvtx,osrt"


@dataclass
class SessionConfig:
    model: str = "birefnet"
    requests: int = 4
    batch_size: int = 4
    lanes: int = 4
    size: int = 512
    sequential: bool = False
    warmup: int = 1
    profile: bool = True  # False: the same workload without torch.profiler (overhead baseline)
    top: int = 10
    engine: EngineConfig = field(default_factory=EngineConfig)


def build_engine(cfg: SessionConfig) -> Engine:
    engine_cfg = cfg.engine
    engine_cfg.models = (cfg.model,)
    engine_cfg.lanes = cfg.lanes
    engine_cfg.birefnet_size = engine_cfg.sam2_size = cfg.size
    engine_cfg.timing = True
    return Engine(engine_cfg)


def run_workload(engine: Engine, cfg: SessionConfig, batches: list[list[Any]]) -> float:
    """Run the batches, each inside a `batch{r}` range; returns wall seconds."""
    run = batch_runner(engine, cfg.model, cfg.sequential)
    torch = require_torch()
    start = time.perf_counter()
    for r, batch in enumerate(batches):
        with torch.profiler.record_function(f"batch{r}"), nvtx_range(f"batch{r}"):
            run(batch)
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    return time.perf_counter() - start


def run_session(
    cfg: SessionConfig, out_dir: str | Path, engine: Engine | None = None
) -> dict[str, Any]:
    """Profile the workload; write trace.json and summary.json into out_dir; return the summary."""
    torch = require_torch()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    engine = engine or build_engine(cfg)
    batches = [
        make_batch(cfg.model, cfg.batch_size, cfg.size, seed=100 * r) for r in range(cfg.requests)
    ]
    run = batch_runner(engine, cfg.model, cfg.sequential)
    for _ in range(cfg.warmup):
        run(batches[0])
    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(engine.device)
    for lane in engine.pool.lanes:
        lane.busy_s, lane.gpu_ms = 0.0, []
    if not cfg.profile:
        wall = run_workload(engine, cfg, batches)
        return {"wall_s": wall, "images": cfg.requests * cfg.batch_size, "profiled": False}
    activities = [torch.profiler.ProfilerActivity.CPU]
    if engine.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    warm_profiler(engine, activities)
    with torch.profiler.profile(
        activities=activities, experimental_config=all_threads_config()
    ) as prof:
        wall = run_workload(engine, cfg, batches)
    memory = memory_stats(engine.device)
    trace = out / "trace.json"
    prof.export_chrome_trace(str(trace))
    summary = summarize(cfg, engine, wall, trace, prof, memory)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def warm_profiler(engine: Engine, activities: list[Any]) -> None:
    """A tiny profiled run over every lane thread before the measured one.

    The first profiler start in a process also sets up the profiler's per-thread state; left
    inside the measured session it inflates the first session's wall time.
    """
    torch = require_torch()
    with torch.profiler.profile(activities=activities, experimental_config=all_threads_config()):
        engine.scheduler.run(list(range(len(engine.pool))), lambda batch, lane: list(batch))


def all_threads_config() -> Any:
    """Profile every thread: the lanes run in worker threads, which torch skips by default."""
    torch = require_torch()
    try:
        return torch._C._profiler._ExperimentalConfig(profile_all_threads=True)
    except TypeError:  # torch without the option: only the calling thread is recorded
        return None


def summarize(
    cfg: SessionConfig, engine: Engine, wall: float, trace: Path, prof: Any, memory: dict[str, Any]
) -> dict[str, Any]:
    images = cfg.requests * cfg.batch_size
    is_cuda = engine.device.type == "cuda"
    config = {k: v for k, v in asdict(cfg).items() if k != "engine"}
    config["precision"] = engine.precision or "fp32"
    config["weights"] = engine.weights
    return {
        "config": config,
        "device": device_info(engine.device),
        "images": images,
        "wall_s": round(wall, 4),
        "throughput_images_per_s": round(images / wall, 4),
        "lane_activity": lane_summary(load_trace_events(trace)),
        "lane_gpu_ms": {lane.name: round(sum(lane.gpu_ms), 3) for lane in engine.pool.lanes}
        if is_cuda
        else None,
        "top_operators": top_operators(prof.key_averages(), cfg.top, cuda=is_cuda),
        "memory": memory,
        "files": {"trace": "trace.json", "summary": "summary.json"},
        "allocator": allocator_config(),
        "nsys": {"report": None, "reason": "not requested"},
        "py_spy": {"flamegraph": None, "reason": "not requested"},
    }


def nsys_capture(argv: list[str], out: Path, timeout_s: float = 1800) -> dict[str, Any]:
    """Re-run this session under `nsys profile` (CUDA + NVTX + OS runtime) when nsys exists."""
    nsys = shutil.which("nsys")
    if nsys is None:
        return {"report": None, "reason": "nsys not found on PATH"}
    report = out / "nsys"
    inner = [*argv, "--out", str(out / "nsys-inner"), "--nsys", "off", "--py-spy", "off"]
    cmd = [
        nsys,
        "profile",
        f"--trace={NSYS_TRACE}",
        "--force-overwrite=true",
        "-o",
        str(report),
        sys.executable,
        "-m",
        "gpu.profiling",
        *inner,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    path = report.with_suffix(".nsys-rep")
    if proc.returncode != 0 or not path.exists():
        return {"report": None, "reason": f"nsys exited {proc.returncode}: {proc.stderr[-400:]}"}
    return {"report": path.name, "reason": None}


def find_py_spy() -> str | None:
    """py-spy next to this interpreter (a venv's bin/, not always on PATH), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


def py_spy_capture(argv: list[str], out: Path, timeout_s: float = 1800) -> dict[str, Any]:
    """Re-run this session under `py-spy record` and write DIR/flame.svg (a flame graph).

    py-spy samples the Python stacks of every thread (`--threads`: one tower per lane) 100
    times a second. It runs the workload as its child, which ordinary ptrace rules allow
    (attaching to an already running process often needs extra privileges).
    """
    py_spy = find_py_spy()
    if py_spy is None:
        return {"flamegraph": None, "reason": "py-spy not installed (pip install py-spy)"}
    svg = out / "flame.svg"
    inner = [*argv, "--out", str(out / "py-spy-inner"), "--nsys", "off", "--py-spy", "off"]
    cmd = [
        py_spy, "record", "--format", "flamegraph", "--threads", "--rate", "100",
        "-o", str(svg), "--", sys.executable, "-m", "gpu.profiling", *inner,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if proc.returncode != 0 or not svg.exists():
        detail = (proc.stderr or proc.stdout)[-400:]
        return {"flamegraph": None, "reason": f"py-spy exited {proc.returncode}: {detail}"}
    return {"flamegraph": svg.name, "reason": None}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gpu.profiling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", choices=["birefnet", "sam2"], default="birefnet")
    p.add_argument("--requests", type=int, default=4, help="profiled batches")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--size", type=int, default=512, help="square image side (px)")
    p.add_argument("--sequential", action="store_true", help="one item at a time, no lanes")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", default="profile-out", help="folder for trace.json/summary.json")
    p.add_argument(
        "--nsys",
        choices=["auto", "on", "off"],
        default="auto",
        help="Nsight Systems capture: auto = when nsys is on PATH",
    )
    p.add_argument(
        "--py-spy",
        nargs="?",
        const="on",
        choices=["auto", "on", "off"],
        default="off",
        help="py-spy flame graph (flame.svg) of the same workload; --py-spy alone = on",
    )
    p.add_argument("--json", action="store_true", help="print the summary JSON, not the table")
    add_engine_args(p, default_models="")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    configure_allocator()  # before torch touches CUDA
    args.models = args.model
    cfg = SessionConfig(
        model=args.model, requests=args.requests, batch_size=args.batch_size, lanes=args.lanes,
        size=args.size, sequential=args.sequential, warmup=args.warmup,
        engine=engine_config_from_args(args),
    )  # fmt: skip
    out = Path(args.out)
    try:
        summary = run_session(cfg, out)
    except (GpuServiceError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.nsys == "on" or (args.nsys == "auto" and shutil.which("nsys")):
        summary["nsys"] = nsys_capture(_without_out_and_nsys(argv), out)
    elif args.nsys == "auto":
        summary["nsys"] = {"report": None, "reason": "nsys not found on PATH"}
    if args.py_spy == "on" or (args.py_spy == "auto" and find_py_spy()):
        summary["py_spy"] = py_spy_capture(_without_out_and_nsys(argv), out)
        if summary["py_spy"]["flamegraph"]:
            summary["files"]["flamegraph"] = summary["py_spy"]["flamegraph"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2) if args.json else render_summary_table(summary))
    return 0


def _without_out_and_nsys(argv: list[str]) -> list[str]:
    cleaned, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("--out", "--nsys"):
            skip = True
            continue
        if arg.startswith(("--out=", "--nsys=", "--py-spy")):
            if arg == "--py-spy" and i + 1 < len(argv) and argv[i + 1] in ("auto", "on", "off"):
                skip = True
            continue
        cleaned.append(arg)
    return cleaned


if __name__ == "__main__":
    sys.exit(main())
