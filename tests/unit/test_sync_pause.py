"""The sync's retry waits keep a cancellation that races their end (Python 3.11's
`asyncio.wait_for` returns the result instead and the cancelled sync goes on looping)."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.sync.service import pause


async def test_a_cancellation_racing_the_stop_is_kept() -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(pause(stop, 30))
    await asyncio.sleep(0)  # the task waits on `stop`
    stop.set()  # the wait ends in the same loop turn as...
    task.cancel()  # ...the cancellation arrives
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_pause_ends_on_stop_or_after_its_delay() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await pause(stop, 0.01)
    assert loop.time() - started >= 0.01
    stop.set()
    await asyncio.wait_for(pause(stop, 30), 1)  # returns at once
