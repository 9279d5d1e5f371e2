"""Service metrics: request counts, latency percentiles, queue depth, images processed.

Kept in memory by the one event loop that serves requests (no locks needed there); exposed as
JSON on `GET /metrics` and in Prometheus text format on `GET /metrics?format=prometheus`.
Latency percentiles come from a bounded window of recent samples per route.

Slow requests: each request is timed by stage (`stage("decode")` … inside a request; the
service records read, decode, queue, model and encode). A request slower than the threshold
(`python -m gpu --slow-ms`, default 2000; 0 turns it off) is logged on the `gpu.slow` logger
with its stages, and the last few are kept for `GET /metrics` (`slow_requests`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

SLOW_LOG = logging.getLogger("gpu.slow")
SLOW_KEPT = 32
_CURRENT: ContextVar[dict[str, float] | None] = ContextVar("gpu_request_stages", default=None)


@contextlib.contextmanager
def request_stages() -> Iterator[dict[str, float]]:
    """Collect the stage timings (ms) of the request running in this context."""
    stages: dict[str, float] = {}
    token = _CURRENT.set(stages)
    try:
        yield stages
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Time one stage of the current request (adds up when a stage repeats); no-op outside one."""
    stages = _CURRENT.get()
    start = time.perf_counter()
    try:
        yield
    finally:
        if stages is not None:
            stages[name] = stages.get(name, 0.0) + (time.perf_counter() - start) * 1000.0


@dataclass
class SlowRequests:
    """Requests over `threshold_ms`: logged with their stages, the last `SLOW_KEPT` kept."""

    threshold_ms: float = 2000.0
    count: int = 0
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=SLOW_KEPT))

    def check(
        self, route: str, status: int, total_ms: float, stages: dict[str, float], images: int
    ) -> bool:
        if self.threshold_ms <= 0 or total_ms < self.threshold_ms:
            return False
        self.count += 1
        entry = {
            "time": round(time.time(), 3),
            "route": route,
            "status": status,
            "images": images,
            "total_ms": round(total_ms, 1),
            "stages_ms": {k: round(v, 1) for k, v in stages.items()},
        }
        self.recent.append(entry)
        by_stage = ", ".join(f"{k} {v:.1f}" for k, v in entry["stages_ms"].items()) or "-"
        SLOW_LOG.warning(
            "slow request %s: %.1f ms (threshold %.0f ms), status %d, %d image(s); "
            "by stage (ms): %s",
            route, total_ms, self.threshold_ms, status, images, by_stage,
        )  # fmt: skip
        return True

    def snapshot(self) -> dict[str, Any]:
        return {"threshold_ms": self.threshold_ms, "count": self.count, "recent": list(self.recent)}


WINDOW = 2048


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


@dataclass
class Metrics:
    started: float = field(default_factory=time.time)
    requests: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    statuses: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    images: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    latency_ms: dict[str, deque[float]] = field(
        default_factory=lambda: defaultdict(lambda: deque(maxlen=WINDOW))
    )
    queue_depth: int = 0
    in_flight: int = 0
    max_queue_depth: int = 0
    slow: SlowRequests = field(default_factory=SlowRequests)

    def observe(self, route: str, status: int, seconds: float, images: int = 0) -> None:
        self.requests[route] += 1
        self.statuses[str(status)] += 1
        self.images[route] += images
        self.latency_ms[route].append(seconds * 1000.0)

    def enqueue(self) -> None:
        self.queue_depth += 1
        self.max_queue_depth = max(self.max_queue_depth, self.queue_depth)

    def dequeue(self) -> None:
        self.queue_depth -= 1

    def snapshot(self) -> dict[str, Any]:
        latency = {}
        for route, window in self.latency_ms.items():
            samples = list(window)
            latency[route] = {
                "count": len(samples),
                "mean": round(sum(samples) / len(samples), 2) if samples else 0.0,
                "p50": round(percentile(samples, 50), 2),
                "p95": round(percentile(samples, 95), 2),
                "max": round(max(samples), 2) if samples else 0.0,
            }
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "requests_total": sum(self.requests.values()),
            "requests": dict(self.requests),
            "responses_by_status": dict(self.statuses),
            "images": dict(self.images),
            "latency_ms": latency,
            "queue_depth": self.queue_depth,
            "max_queue_depth": self.max_queue_depth,
            "in_flight": self.in_flight,
            "slow_requests": self.slow.snapshot(),
        }

    def prometheus(self) -> str:
        snap = self.snapshot()
        lines = [
            "# TYPE orch_gpu_requests_total counter",
            *(f'orch_gpu_requests_total{{route="{r}"}} {n}' for r, n in snap["requests"].items()),
            "# TYPE orch_gpu_responses_total counter",
            *(
                f'orch_gpu_responses_total{{status="{s}"}} {n}'
                for s, n in snap["responses_by_status"].items()
            ),
            "# TYPE orch_gpu_images_total counter",
            *(f'orch_gpu_images_total{{route="{r}"}} {n}' for r, n in snap["images"].items()),
            "# TYPE orch_gpu_latency_ms summary",
        ]
        for route, lat in snap["latency_ms"].items():
            for q in ("p50", "p95"):
                quantile = "0.5" if q == "p50" else "0.95"
                lines.append(
                    f'orch_gpu_latency_ms{{route="{route}",quantile="{quantile}"}} {lat[q]}'
                )
        lines += [
            "# TYPE orch_gpu_queue_depth gauge",
            f"orch_gpu_queue_depth {snap['queue_depth']}",
            "# TYPE orch_gpu_in_flight gauge",
            f"orch_gpu_in_flight {snap['in_flight']}",
            "# TYPE orch_gpu_slow_requests_total counter",
            f"orch_gpu_slow_requests_total {snap['slow_requests']['count']}",
        ]
        return "\n".join(lines) + "\n"
