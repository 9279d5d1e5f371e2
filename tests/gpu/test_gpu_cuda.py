"""GPU-only checks: real stream overlap, CUDA events, memory stats, kernel events, nsys.

Skipped with a reason on a machine without CUDA (CI and the development machines); run them
with `bash scripts/test_gpu.sh` on any GPU machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gpu.device import memory_stats, resolve_device
from gpu.errors import GpuOutOfMemoryError
from gpu.streams import BatchScheduler, StreamPool

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)"
)


def busy_fn(pool: StreamPool, n: int = 1024, steps: int = 40):
    """Many small matmuls per item: each launch leaves room for other streams' kernels."""
    weight = torch.randn(n, n, device=pool.device) / n**0.5

    def fn(batch, lane):
        outs = []
        for x in batch:
            y = pool.to_device(x)
            for _ in range(steps):
                y = torch.tanh(y @ weight)
            outs.append(pool.to_host(y))
        lane.synchronize()
        return outs

    return fn


def kernel_intervals_by_stream(trace: Path) -> dict[int, list[tuple[float, float]]]:
    events = json.loads(trace.read_text())["traceEvents"]
    streams: dict[int, list[tuple[float, float]]] = {}
    for e in events:
        if e.get("cat") == "kernel" and e.get("ph") == "X":
            stream = int(e.get("args", {}).get("stream", e.get("tid", 0)))
            streams.setdefault(stream, []).append((e["ts"], e["ts"] + e["dur"]))
    return streams


def test_lanes_are_cuda_streams_with_pinned_copies() -> None:
    pool = StreamPool(4, resolve_device("cuda"))
    streams = {lane.stream.cuda_stream for lane in pool.lanes}
    assert len(streams) == 4 and torch.cuda.current_stream().cuda_stream not in streams
    x = torch.randn(1000)
    with pool.lanes[0].context():
        y = pool.to_device(x)
        back = pool.to_host(y * 2)
    pool.lanes[0].synchronize()
    assert back.is_pinned() and torch.equal(back, x * 2)


def test_kernels_of_different_lanes_overlap(tmp_path) -> None:
    pool = StreamPool(4, resolve_device("cuda"), timing=True)
    sched: BatchScheduler = BatchScheduler(pool, max_batch=1)
    items = [torch.randn(64, 1024) for _ in range(8)]
    fn = busy_fn(pool)
    sched.run(items, fn)  # warm-up
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    ) as prof:
        lanes_out = sched.run(items, fn)
    prof.export_chrome_trace(str(tmp_path / "trace.json"))
    sequential = sched.run_sequential(items, fn)
    assert all(torch.allclose(a, b) for a, b in zip(lanes_out, sequential, strict=True))
    from gpu.trace_summary import overlap_stats

    streams = kernel_intervals_by_stream(tmp_path / "trace.json")
    assert len(streams) >= 2, streams.keys()
    overlapped, _busy = overlap_stats({str(k): v for k, v in streams.items()})
    assert overlapped > 0, "no two lanes' kernels ever ran at the same time"
    assert all(lane.gpu_ms and min(lane.gpu_ms) > 0 for lane in pool.lanes)  # CUDA events
    sched.close()


def test_memory_stats_and_fraction() -> None:
    device = resolve_device("cuda")
    pool = StreamPool(2, device, memory_fraction=0.9)
    assert pool.describe()["memory_fraction_applied"] is True
    torch.cuda.reset_peak_memory_stats(device)
    block = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device=device)
    stats = memory_stats(device)
    assert stats["cuda_peak_allocated_mb"] >= 256
    assert 0 < stats["cuda_free_mb"] < stats["cuda_total_mb"]
    del block


def test_real_out_of_memory_becomes_a_clear_error() -> None:
    device = resolve_device("cuda")
    pool = StreamPool(2, device)
    sched: BatchScheduler = BatchScheduler(pool)
    total = torch.cuda.get_device_properties(device).total_memory

    def fn(batch, lane):
        return [torch.empty(total * 2, dtype=torch.uint8, device=device) for _ in batch]

    with pytest.raises(GpuOutOfMemoryError, match="batch of 1"):
        sched.run([0, 1, 2, 3], fn)
    assert sched.oom_retries >= 1
    assert sched.run([1, 2], lambda b, lane: b) == [1, 2]  # still usable afterwards
    sched.close()


def test_engine_on_gpu_matches_sequential_and_profiles_kernels(tmp_path) -> None:
    from gpu.engine import EngineConfig
    from gpu.profiling import SessionConfig, build_engine, run_session
    from gpu.workload import make_batch

    cfg = SessionConfig(
        model="birefnet", requests=2, batch_size=4, lanes=4, size=256,
        engine=EngineConfig(random_weights=True, birefnet_backbone="pvt_v2_b0", precision="fp32"),
    )  # fmt: skip
    engine = build_engine(cfg)
    try:
        images = make_batch("birefnet", 4, 256)
        lanes = engine.remove_background(images)
        sequential = engine.remove_background(images, sequential=True)
        # Same kernels on other streams; allow one grey level for nondeterministic kernels.
        assert all(
            np.abs(a.astype(int) - b.astype(int)).max() <= 1
            for a, b in zip(lanes, sequential, strict=True)
        )
        summary = run_session(cfg, tmp_path, engine)
    finally:
        engine.close()
    assert summary["lane_activity"]["kernel_events"] > 0
    assert summary["memory"]["cuda_peak_allocated_mb"] > 0
    assert summary["lane_gpu_ms"] and all(v > 0 for v in summary["lane_gpu_ms"].values())
    assert summary["top_operators"][0]["self_device_ms"] > 0


@pytest.mark.skipif(shutil.which("nsys") is None, reason="Nsight Systems (nsys) is not installed")
def test_nsys_capture_of_the_same_workload(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "gpu.profiling", "--model", "sam2", "--requests", "1",
         "--batch-size", "2", "--lanes", "2", "--size", "256", "--random-weights",
         "--out", str(tmp_path), "--nsys", "on"],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["nsys"]["report"] == "nsys.nsys-rep", summary["nsys"]
    assert (tmp_path / "nsys.nsys-rep").stat().st_size > 0
