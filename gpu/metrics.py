"""Service metrics: request counts, latency percentiles, queue depth, images processed.

Kept in memory by the one event loop that serves requests (no locks needed there); exposed as
JSON on `GET /metrics` and in Prometheus text format on `GET /metrics?format=prometheus`.
Latency percentiles come from a bounded window of recent samples per route.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

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
        ]
        return "\n".join(lines) + "\n"
