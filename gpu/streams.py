"""The stream pool and the batch scheduler that spreads a batch over its lanes.

A *lane* is one CUDA stream on a GPU and a no-op context on the CPU. The scheduler cuts a batch
into micro-batches, hands them round-robin to the lanes and runs each lane in its own thread, so
the kernels of different lanes are queued on different streams and can overlap on the GPU.

Correctness rules it enforces on CUDA:
- a lane's stream first waits for the default stream, so weights/inputs made there are ready;
- host→device copies come from pinned memory with `non_blocking=True` (`StreamPool.to_device`),
  device→host copies go into pinned buffers (`StreamPool.to_host`);
- the lane's stream is synchronized before its results are handed back, so a caller never
  reads a pinned buffer that is still being written.

CUDA out-of-memory in a micro-batch → the cache is emptied and the micro-batch is retried in
halves (and later calls use the smaller size); a single item that still does not fit raises
`GpuOutOfMemoryError`. Results are returned in input order and equal a sequential run.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gpu.device import nvtx_range, require_torch, set_memory_fraction
from gpu.errors import GpuOutOfMemoryError

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Lane:
    """One lane: a CUDA stream (None on the CPU or for the sequential lane)."""

    index: int
    device: Any
    stream: Any = None
    name: str = ""
    busy_s: float = 0.0
    gpu_ms: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = self.name or f"lane{self.index}"

    def context(self) -> contextlib.AbstractContextManager[Any]:
        if self.stream is None:
            return contextlib.nullcontext()
        return require_torch().cuda.stream(self.stream)

    def synchronize(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()


class StreamPool:
    """N lanes on one device, plus the pinned-memory copy helpers they use."""

    def __init__(
        self, lanes: int, device: Any, memory_fraction: float | None = None, timing: bool = False
    ) -> None:
        if lanes < 1:
            raise ValueError(f"a stream pool needs at least one lane, got {lanes}")
        torch = require_torch()
        self.device = device
        self.is_cuda = device.type == "cuda"
        self.memory_fraction = memory_fraction
        self.memory_fraction_applied = set_memory_fraction(device, memory_fraction)
        # CUDA events per micro-batch are only recorded when asked (profiling, GPU tests).
        self.timing = timing and self.is_cuda
        self.lanes = [
            Lane(i, device, torch.cuda.Stream(device=device) if self.is_cuda else None)
            for i in range(lanes)
        ]
        self.sequential_lane = Lane(-1, device, None, name="sequential")

    def __len__(self) -> int:
        return len(self.lanes)

    def to_device(self, tensor: Any) -> Any:
        """Host tensor → device; from pinned memory and non-blocking on CUDA."""
        if not self.is_cuda:
            return tensor.to(self.device)
        if not tensor.is_pinned():
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def to_host(self, tensor: Any) -> Any:
        """Device tensor → a pinned host tensor, non-blocking; valid after the lane syncs."""
        if not self.is_cuda or tensor.device.type != "cuda":
            return tensor.detach().cpu()
        torch = require_torch()
        out = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        out.copy_(tensor, non_blocking=True)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "lanes": len(self.lanes),
            "kind": "cuda-streams" if self.is_cuda else "cpu-no-op",
            "memory_fraction": self.memory_fraction,
            "memory_fraction_applied": self.memory_fraction_applied,
        }


def item_label(lane: Lane, indices: Sequence[int]) -> str:
    """The record_function / NVTX label of one micro-batch: lane0/item3 or lane0/items4-7."""
    if len(indices) == 1:
        return f"{lane.name}/item{indices[0]}"
    return f"{lane.name}/items{indices[0]}-{indices[-1]}"


class BatchScheduler(Generic[T, R]):
    """Runs `fn(micro_batch, lane) -> results` over a batch, lane-parallel or sequentially."""

    def __init__(self, pool: StreamPool, max_batch: int | None = None) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self.oom_retries = 0
        self._lock = threading.Lock()
        # One thread per lane, so a lane is one track in a trace and never shares a thread.
        self._executors = [
            ThreadPoolExecutor(1, thread_name_prefix=f"gpu-{lane.name}") for lane in pool.lanes
        ]

    def close(self) -> None:
        for executor in self._executors:
            executor.shutdown(wait=True)

    def plan(self, n_items: int) -> list[list[int]]:
        """Cut item indices into micro-batches, at most one per lane unless max_batch is set."""
        if n_items == 0:
            return []
        size = math.ceil(n_items / len(self.pool))
        if self.max_batch is not None:
            size = min(size, self.max_batch)
        return [list(range(i, min(i + size, n_items))) for i in range(0, n_items, size)]

    def run(self, items: Sequence[T], fn: Callable[[list[T], Lane], list[R]]) -> list[R]:
        """Spread items over the lanes; results come back in input order."""
        micro = self.plan(len(items))
        per_lane: list[list[list[int]]] = [[] for _ in self.pool.lanes]
        for j, indices in enumerate(micro):
            per_lane[j % len(self.pool)].append(indices)
        torch = require_torch()
        if self.pool.is_cuda:
            current = torch.cuda.current_stream(self.pool.device)
            for lane in self.pool.lanes:
                lane.stream.wait_stream(current)
        futures = [
            executor.submit(self._run_lane, lane, batches, items, fn)
            for executor, lane, batches in zip(
                self._executors, self.pool.lanes, per_lane, strict=True
            )
            if batches
        ]
        results: list[Any] = [None] * len(items)
        errors = []
        for future in futures:
            try:
                for index, result in future.result():
                    results[index] = result
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return results

    def run_sequential(self, items: Sequence[T], fn: Callable[[list[T], Lane], list[R]]) -> list[R]:
        """The reference: one item at a time on the default stream, in the calling thread."""
        lane = self.pool.sequential_lane
        out: list[R] = []
        for i in range(len(items)):
            out.extend(r for _, r in self._run_micro(lane, [i], items, fn))
        return out

    def _run_lane(
        self,
        lane: Lane,
        batches: list[list[int]],
        items: Sequence[T],
        fn: Callable[[list[T], Lane], list[R]],
    ) -> list[tuple[int, R]]:
        if self.pool.is_cuda:
            require_torch().cuda.set_device(self.pool.device)
        out: list[tuple[int, R]] = []
        for indices in batches:
            out.extend(self._run_micro(lane, indices, items, fn))
        return out

    def _run_micro(
        self,
        lane: Lane,
        indices: list[int],
        items: Sequence[T],
        fn: Callable[[list[T], Lane], list[R]],
    ) -> list[tuple[int, R]]:
        torch = require_torch()
        label = item_label(lane, indices)
        start = time.perf_counter()
        try:
            with torch.profiler.record_function(label), nvtx_range(label), lane.context():
                events = self._start_events(lane)
                results = fn([items[i] for i in indices], lane)
                self._end_events(lane, events)
            lane.synchronize()
            if events is not None:
                lane.gpu_ms.append(events[0].elapsed_time(events[1]))
        except torch.cuda.OutOfMemoryError as exc:
            return self._retry_smaller(lane, indices, items, fn, exc)
        finally:
            lane.busy_s += time.perf_counter() - start
        if len(results) != len(indices):
            raise RuntimeError(f"{label}: got {len(results)} results for {len(indices)} items")
        return list(zip(indices, results, strict=True))

    def _retry_smaller(
        self,
        lane: Lane,
        indices: list[int],
        items: Sequence[T],
        fn: Callable[[list[T], Lane], list[R]],
        exc: BaseException,
    ) -> list[tuple[int, R]]:
        torch = require_torch()
        if self.pool.is_cuda:
            lane.synchronize()
            torch.cuda.empty_cache()
        if len(indices) == 1:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
            raise GpuOutOfMemoryError(1, first_line) from exc
        half = len(indices) // 2
        with self._lock:
            self.oom_retries += 1
            self.max_batch = min(self.max_batch or half, half)
        return self._run_micro(lane, indices[:half], items, fn) + self._run_micro(
            lane, indices[half:], items, fn
        )

    def _start_events(self, lane: Lane) -> Any:
        if not (self.pool.timing and lane.stream is not None):
            return None
        torch = require_torch()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(lane.stream)
        return start, end

    @staticmethod
    def _end_events(lane: Lane, events: Any) -> None:
        if events is not None:
            events[1].record(lane.stream)
