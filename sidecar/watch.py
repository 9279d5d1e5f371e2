"""Watching `orch status`: one loop that re-reads a status and pushes it when it changed.

The orch agent runs one `StatusWatch` per (project, machine) a client watches and pushes its
changes to every subscribed client (the language servers of several VS Code windows, `orch
status`); the language server runs one itself only without the agent (`ORCH_NO_AGENT=1`).

A watch checks every second while something moves (a job running, the machine starting or
stopping, a sync in progress) and every few seconds otherwise (`$ORCH_STATUS_IDLE_S`, 5 by
default), and at once after `poke()`. The machine's uptime alone does not count as a change
(it would push every check); while something moves, every difference is pushed, so running
jobs show fresh time and memory. The remote stays the source of truth; this only notices
changes.

Every read is bounded (`read_timeout()`, `$ORCH_STATUS_READ_TIMEOUT_S`): the facade bounds
each remote read itself, and a whole read still running after twice that is given up and
pushed as the last status with the machine "unknown" and an "unreachable" detail, so a
machine that keeps a connection open without answering never stalls the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

BUSY_INTERVAL_S = 1.0
IDLE_INTERVAL_S = 5.0
MAX_AGE_S = 1.0  # `current()` answers from a read younger than this
READ_TIMEOUT_S = 8.0
STOP_WAIT_S = 2.0  # `stop` waits at most this long for the loop to end
IDLE_ENV = "ORCH_STATUS_IDLE_S"  # overrides IDLE_INTERVAL_S (tests use a short one)
READ_ENV = "ORCH_STATUS_READ_TIMEOUT_S"  # overrides READ_TIMEOUT_S

Status = dict[str, Any]
Listener = Callable[[Status], None]


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def idle_interval() -> float:
    """The check interval while nothing moves: IDLE_INTERVAL_S, or $ORCH_STATUS_IDLE_S."""
    return _env_seconds(IDLE_ENV, IDLE_INTERVAL_S)


def read_timeout() -> float:
    """How long one remote read of a status may take: READ_TIMEOUT_S, or the env's."""
    return _env_seconds(READ_ENV, READ_TIMEOUT_S)


def busy(status: Status) -> bool:
    return (
        status["machine"]["state"] in ("starting", "stopping")
        or any(job.get("state") == "running" for job in status["jobs"])
        or status["sync"].get("state") == "syncing"
    )


def steady(status: Status) -> Status:
    """The status without the fields that change on every read when nothing happens (the
    idle agent's line still changes each minute, and its action at a warning; the spend
    today's line each cent)."""
    idle = status.get("idle")
    if idle:
        idle = {k: v for k, v in idle.items() if k not in ("idle_s", "stops_in_s", "checked_s_ago")}
    # Spend grows with every read while a priced machine runs: only the cents (its line) and
    # crossing the budget are changes worth a push.
    cost = status.get("cost")
    if cost:
        cost = {k: v for k, v in cost.items() if k != "spend_today"}
    machine = {**status["machine"], "uptime_s": None, "cost_so_far": None}
    return {**status, "machine": machine, "idle": idle, "cost": cost}


def changed(last: Status | None, new: Status) -> bool:
    """Whether `new` is worth a push after `last` (see the module docstring)."""
    if last is None:
        return True
    return new != last if busy(new) or busy(last) else steady(new) != steady(last)


def unreachable(last: Status | None, name: str, message: str) -> Status:
    """The last status (or an empty one) with the machine unknown and why."""
    base: Status = last or {"jobs": [], "sync": {}, "ports": [], "queues": [], "config": {}}
    machine = {**(base.get("machine") or {"name": name, "kind": "?"})}
    machine.update(state="unknown", detail=f"unreachable: {message}")
    return {**base, "machine": machine}


class StatusWatch:
    """Re-reads one status (`read`) and calls every listener with it when it changed."""

    def __init__(self, read: Callable[[], Awaitable[Status]], name: str = "status") -> None:
        self.read = read
        self.name = name
        self.listeners: list[Listener] = []
        self.last: Status | None = None  # what was last pushed
        self._latest: tuple[float, Status] | None = None  # (monotonic time, payload)
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.idle_interval_s = idle_interval()
        self.read_timeout_s = read_timeout()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._run(), name=f"orch-watch-{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_WAIT_S)

    def poke(self) -> None:
        """Something may have changed: the next answer is a fresh read, done at once."""
        self._latest = None
        self._wake.set()

    async def current(self, fresh: bool = False, max_age: float = MAX_AGE_S) -> Status:
        """The latest read if under `max_age` old, else a new check."""
        latest = self._latest
        if not fresh and latest is not None and time.monotonic() - latest[0] < max_age:
            return latest[1]
        return await self.check()

    async def check(self) -> Status:
        """Reads the status (bounded) and pushes it when it changed; returns it."""
        async with self._lock:  # one read at a time, however many ask
            began = time.monotonic()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # racing with its result, and a stopped watch must stop.
                async with asyncio.timeout(2 * self.read_timeout_s):
                    payload = await self.read()
            except TimeoutError:
                message = f"no answer within {2 * self.read_timeout_s:g} s"
                log.warning("%s: the status read gave %s", self.name, message)
                name = self.name.rsplit("@", 1)[-1]
                payload = unreachable(self.last, name, message)
            self._latest = (began, payload)
            pushed = changed(self.last, payload)
            if pushed:
                self.last = payload
                for listener in list(self.listeners):
                    listener(payload)
            log.debug(
                "%s read in %.0f ms%s",
                self.name,
                (time.monotonic() - began) * 1000,
                "; pushed" if pushed else "",
            )
            return payload

    async def _run(self) -> None:
        from sidecar.errors import OrchError

        interval = BUSY_INTERVAL_S
        while True:
            # Cleared before the check, so a poke arriving during it triggers another.
            self._wake.clear()
            try:
                payload = await self.check()
                interval = BUSY_INTERVAL_S if busy(payload) else self.idle_interval_s
            except OrchError as exc:
                log.warning("status check failed: %s", exc.message)
                interval = self.idle_interval_s
            except Exception:
                log.exception("status check failed")
                interval = self.idle_interval_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
