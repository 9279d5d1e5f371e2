"""Shared helpers for benchmarks: timing statistics and the output convention.

Every benchmark is a script `bench/<name>.py` whose `main()` measures orch against the naive
alternative in the same run and calls `emit()`: the JSON document goes to stdout (one object,
so `bench/run.py` can collect it) and a short human table to stderr.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def percentile(samples: Sequence[float], pct: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    """p50/p95/min/max/mean of samples given in seconds, reported in milliseconds."""
    ms = [s * 1000 for s in samples]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def time_calls(fn: Callable[[], Any], n: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def orch_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True, **kwargs)


def emit(
    name: str,
    results: dict[str, Any],
    rows: list[list[object]],
    headers: Sequence[str] = ("metric", "value", "goal", "ok"),
) -> None:
    doc = {
        "benchmark": name,
        "results": results,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    print(json.dumps(doc, indent=2))
    widths = [max(len(str(r[i])) for r in [list(headers), *rows]) for i in range(len(headers))]
    print(f"\n{name}", file=sys.stderr)
    for row in [list(headers), *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)), file=sys.stderr)
