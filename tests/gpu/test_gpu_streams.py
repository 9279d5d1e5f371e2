"""The stream pool and batch scheduler: lane results equal a sequential run, OOM retries.

On this CPU a lane is a no-op context run in its own thread; the same code paths (planning,
threading, ordering, OOM handling with torch's real OutOfMemoryError type) run on a GPU,
where tests/gpu/test_gpu_cuda.py adds what needs real streams.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from gpu.device import nvtx_range, resolve_device, set_memory_fraction
from gpu.errors import GpuOutOfMemoryError
from gpu.streams import BatchScheduler, Lane, StreamPool, item_label
from gpu.workload import make_batch


def matmul_fn(pool: StreamPool):
    weight = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))

    def fn(batch: list[torch.Tensor], lane: Lane) -> list[torch.Tensor]:
        x = pool.to_device(torch.stack(batch))
        for _ in range(5):
            x = torch.tanh(x @ weight.to(x.device))
        out = pool.to_host(x)
        lane.synchronize()
        return list(out)

    return fn


@pytest.fixture
def pool() -> StreamPool:
    return StreamPool(3, resolve_device("cpu"))


def test_plan_spreads_items_over_lanes(pool: StreamPool) -> None:
    sched = BatchScheduler(pool)
    assert sched.plan(0) == []
    assert sched.plan(3) == [[0], [1], [2]]
    assert sched.plan(7) == [[0, 1, 2], [3, 4, 5], [6]]
    sched.max_batch = 2
    assert sched.plan(7) == [[0, 1], [2, 3], [4, 5], [6]]
    sched.close()


def test_lanes_equal_sequential_and_keep_order(pool: StreamPool) -> None:
    items = [torch.randn(64, generator=torch.Generator().manual_seed(i)) for i in range(10)]
    sched: BatchScheduler = BatchScheduler(pool, max_batch=1)
    fn = matmul_fn(pool)
    threads: set[tuple[int, str]] = set()

    def spy(batch, lane):
        threads.add((lane.index, threading.current_thread().name))
        return fn(batch, lane)

    lanes = sched.run(items, spy)
    sequential = sched.run_sequential(items, fn)
    assert len(lanes) == len(sequential) == 10
    assert all(torch.equal(a, b) for a, b in zip(lanes, sequential, strict=True))
    # Each lane ran in its own dedicated thread.
    assert threads == {(i, f"gpu-lane{i}_0") for i in range(3)}
    assert [lane.busy_s > 0 for lane in pool.lanes] == [True, True, True]
    sched.close()


def test_engine_lanes_equal_sequential_for_both_models(engine) -> None:
    images = make_batch("birefnet", 2, 256, seed=7)
    lanes = engine.remove_background(images)
    sequential = engine.remove_background(images, sequential=True)
    assert [m.shape for m in lanes] == [(256, 256), (256, 256)]
    assert all(np.array_equal(a, b) for a, b in zip(lanes, sequential, strict=True))

    items = make_batch("sam2", 4, 256, seed=3)
    lanes = engine.segment(items)
    sequential = engine.segment(items, sequential=True)
    for a, b in zip(lanes, sequential, strict=True):
        assert a["masks"].shape == (1, 256, 256) and a["masks"].dtype == bool
        assert np.array_equal(a["masks"], b["masks"])
        assert np.array_equal(a["scores"], b["scores"])


def test_oom_retries_with_a_smaller_batch(pool: StreamPool) -> None:
    sched: BatchScheduler = BatchScheduler(pool, max_batch=4)
    seen: list[int] = []

    def fn(batch, lane):
        seen.append(len(batch))
        if len(batch) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 2 for x in batch]

    assert sched.run(list(range(8)), fn) == [x * 2 for x in range(8)]
    assert sched.oom_retries >= 2
    assert sched.max_batch == 1  # later calls start at the size that fit
    assert max(seen) == 3 and seen.count(1) == 8  # 8 items on 3 lanes: micro-batches of 3
    sched.close()


def test_oom_at_batch_one_is_a_clear_error(pool: StreamPool) -> None:
    sched: BatchScheduler = BatchScheduler(pool)

    def fn(batch, lane):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    with pytest.raises(GpuOutOfMemoryError) as info:
        sched.run([1, 2, 3], fn)
    message = str(info.value)
    assert "batch of 1" in message and "Tried to allocate 20.00 GiB" in message
    assert "--memory-fraction" in message
    sched.close()


def test_other_errors_propagate_and_the_pool_keeps_working(pool: StreamPool) -> None:
    sched: BatchScheduler = BatchScheduler(pool)

    def bad(batch, lane):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        sched.run([1, 2, 3], bad)
    assert sched.run([1, 2, 3], lambda b, lane: [x + 1 for x in b]) == [2, 3, 4]
    sched.close()


def test_cpu_lanes_are_no_op_contexts_and_settings_are_checked() -> None:
    cpu = resolve_device("cpu")
    pool = StreamPool(2, cpu, memory_fraction=0.5)
    assert all(lane.stream is None for lane in pool.lanes)
    assert pool.describe() == {
        "lanes": 2,
        "kind": "cpu-no-op",
        "memory_fraction": 0.5,
        "memory_fraction_applied": False,
    }
    with pool.lanes[0].context():
        pass
    with nvtx_range("noop-on-cpu"):
        pass
    with pytest.raises(ValueError, match="memory fraction"):
        set_memory_fraction(cpu, 1.5)
    with pytest.raises(ValueError, match="at least one lane"):
        StreamPool(0, cpu)
    assert item_label(pool.lanes[1], [3]) == "lane1/item3"
    assert item_label(pool.lanes[0], [4, 5, 6]) == "lane0/items4-6"
