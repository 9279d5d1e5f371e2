"""GPU-service benchmark: images/s sequential vs stream lanes, and profiler overhead.

  bash scripts/test_gpu.sh --setup-only   # or any env with the gpu extra + sam2
  python bench/gpu/run.py [--size 256] [--overhead-size 512] [--models birefnet,sam2]

For each model, at batch 4: the same batches run one item at a time on the default stream
("sequential") and spread over 4 lanes (CUDA streams on a GPU, threads with no-op contexts on a
CPU); images/s of each and their ratio (goal on a GPU: lanes >= 2.5x sequential). Then the
profiler overhead at 512 px: the lane workload with and without torch.profiler, rounds
interleaved, ratio of medians (goal <= 1.10). Random weights (explicitly requested): timing
does not depend on weight values. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gpu.device import configure_allocator, device_info
from gpu.engine import EngineConfig
from gpu.profiling import SessionConfig, build_engine, run_session
from gpu.workload import batch_runner, make_batch


def timed(fn: Any, batches: list[list[Any]], device: Any) -> float:
    import torch

    start = time.perf_counter()
    for batch in batches:
        fn(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def throughput(model: str, args: argparse.Namespace) -> dict[str, Any]:
    cfg = SessionConfig(
        model=model, batch_size=args.batch, lanes=args.lanes, size=args.size,
        engine=EngineConfig(random_weights=True, birefnet_backbone=args.backbone),
    )  # fmt: skip
    engine = build_engine(cfg)
    try:
        batches = [
            make_batch(model, args.batch, args.size, seed=10 * r) for r in range(args.batches)
        ]
        seq, lanes = batch_runner(engine, model, True), batch_runner(engine, model, False)
        seq(batches[0])  # warm-up both paths (allocator, oneDNN/cuDNN plans, predictors)
        lanes(batches[0])
        seq_s, lane_s = [], []
        for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
            seq_s.append(timed(seq, batches, engine.device))
            lane_s.append(timed(lanes, batches, engine.device))
        images = args.batch * args.batches
        seq_ips, lane_ips = images / statistics.median(seq_s), images / statistics.median(lane_s)
        return {
            "size": args.size,
            "batch": args.batch,
            "lanes": args.lanes,
            "images_per_round": images,
            "sequential_images_per_s": round(seq_ips, 3),
            "lanes_images_per_s": round(lane_ips, 3),
            "speedup": round(lane_ips / seq_ips, 3),
            "sequential_s": [round(s, 3) for s in seq_s],
            "lanes_s": [round(s, 3) for s in lane_s],
            "backbone": args.backbone if model == "birefnet" else "hiera_t",
        }
    finally:
        engine.close()


def overhead(model: str, args: argparse.Namespace) -> dict[str, Any]:
    cfg = SessionConfig(
        model=model, requests=args.batches, batch_size=args.batch, lanes=args.lanes,
        size=args.overhead_size, warmup=1,
        engine=EngineConfig(random_weights=True, birefnet_backbone=args.backbone),
    )  # fmt: skip
    engine = build_engine(cfg)
    plain, profiled = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                cfg.profile = False
                plain.append(run_session(cfg, tmp, engine)["wall_s"])
                cfg.profile, cfg.warmup = True, 0
                profiled.append(run_session(cfg, Path(tmp) / f"p{r}", engine)["wall_s"])
                cfg.warmup = 0
    finally:
        engine.close()
    ratio = statistics.median(profiled) / statistics.median(plain)
    return {
        "size": args.overhead_size,
        "plain_s": [round(s, 3) for s in plain],
        "profiled_s": [round(s, 3) for s in profiled],
        "ratio": round(ratio, 3),
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"device: {result['device']['name']} ({result['device']['type']}), "
        f"load average at start {result['loadavg_start']}",
        f"{'model':<10}{'size':>6}{'seq img/s':>12}{'lanes img/s':>13}{'speedup':>9}"
        f"{'prof. overhead':>16}",
    ]
    for model, t in result["throughput"].items():
        o = result["profiler_overhead"].get(model, {})
        ratio = f"{o['ratio']:.3f} @{o['size']}" if o else "-"
        lines.append(
            f"{model:<10}{t['size']:>6}{t['sequential_images_per_s']:>12.3f}"
            f"{t['lanes_images_per_s']:>13.3f}{t['speedup']:>8.2f}x{ratio:>16}"
        )
    return "\n".join(lines)


def main() -> int:
    configure_allocator()  # the service's allocator setting, before torch touches CUDA
    import torch

    p = argparse.ArgumentParser(description=__doc__)
    gpu = torch.cuda.is_available()
    p.add_argument("--models", default="birefnet,sam2")
    p.add_argument("--size", type=int, default=1024 if gpu else 256)
    p.add_argument("--overhead-size", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lanes", type=int, default=4)
    p.add_argument("--batches", type=int, default=8 if gpu else 1, help="batches per round")
    p.add_argument("--rounds", type=int, default=5 if gpu else 2)
    p.add_argument("--backbone", default="swin_v1_t", help="BiRefNet backbone")
    args = p.parse_args()
    models = [m for m in args.models.split(",") if m]
    result: dict[str, Any] = {
        "command": "python bench/gpu/run.py " + " ".join(sys.argv[1:]),
        "device": device_info(torch.device("cuda" if gpu else "cpu")),
        "cpu_count": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "throughput": {},
        "profiler_overhead": {},
    }
    start = time.perf_counter()
    for model in models:
        result["throughput"][model] = throughput(model, args)
        result["profiler_overhead"][model] = overhead(model, args)
    result["elapsed_s"] = round(time.perf_counter() - start, 1)
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["goals"] = {
        "lanes_speedup_gpu": ">= 2.5 at batch 4 (GPU only)",
        "profiler_overhead": "<= 1.10 at 512 px",
    }
    print(render(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
