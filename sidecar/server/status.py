"""`orch.status` and the `orch/status` notification.

The client never polls: a watcher task here reads the Orchestrator's status and pushes
`orch/status` whenever it differs from what was last sent. It checks every second while
something is moving (a job running, the machine starting or stopping, a sync in progress)
and every few seconds otherwise (`$ORCH_STATUS_IDLE_S`, 5 by default), and at once after
any command (`OrchServer.changed`).
The machine's uptime alone does not count as a change (it would push every check); while
something moves, every difference is pushed, so running jobs show fresh time and memory.
The remote stays the source of truth; this only notices changes.

`orch.status` answers from the watcher's latest read when it is under `MAX_AGE_S` old and no
command ran since (any command marks it stale), so a client may ask as often as it likes for
about a millisecond; `{"fresh": true}` always reads anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from sidecar.errors import OrchError
from sidecar.server.core import OrchServer, Params, Report

if TYPE_CHECKING:  # loaded with the facade, at the first status read
    from sidecar.results import OrchStatus

log = logging.getLogger(__name__)

STATUS_NOTIFICATION = "orch/status"
BUSY_INTERVAL_S = 1.0
IDLE_INTERVAL_S = 5.0
MAX_AGE_S = 1.0
IDLE_ENV = "ORCH_STATUS_IDLE_S"  # overrides IDLE_INTERVAL_S (tests use a short one)


def idle_interval() -> float:
    """The check interval while nothing moves: IDLE_INTERVAL_S, or $ORCH_STATUS_IDLE_S."""
    try:
        value = float(os.environ.get(IDLE_ENV, IDLE_INTERVAL_S))
    except ValueError:
        return IDLE_INTERVAL_S
    return value if value > 0 else IDLE_INTERVAL_S


class StatusParams(Params):
    fresh: bool = False  # read anew instead of answering from a read under MAX_AGE_S old


def _busy(status: dict[str, Any]) -> bool:
    return (
        status["machine"]["state"] in ("starting", "stopping")
        or any(job.get("state") == "running" for job in status["jobs"])
        or status["sync"].get("state") == "syncing"
    )


def _steady(status: dict[str, Any]) -> dict[str, Any]:
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


class StatusWatcher:
    def __init__(self, server: OrchServer) -> None:
        self.server = server
        self.last: dict[str, Any] | None = None
        self._latest: tuple[float, dict[str, Any]] | None = None  # (monotonic time, payload)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.idle_interval_s = idle_interval()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="orch-status-watcher")

    def poke(self) -> None:
        self._latest = None  # a command may have changed anything: the next read is fresh
        self._wake.set()

    async def current(self, fresh: bool = False) -> dict[str, Any]:
        """The latest read if recent enough (see MAX_AGE_S), else a new check."""
        latest = self._latest
        if not fresh and latest is not None and time.monotonic() - latest[0] < MAX_AGE_S:
            return latest[1]
        return await self.check()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> dict[str, Any]:
        """Reads the status and pushes it when it changed; returns it."""
        began = time.monotonic()
        # An orch agent that died with syncs or forwards is started again (it resumes them).
        await asyncio.to_thread(self.server.orch.revive_agent)
        status: OrchStatus = await self.server.orch.status(self.server.options.machine)
        payload = status.model_dump(mode="json")
        self._latest = (began, payload)
        last = self.last
        changed = last is None or (
            payload != last if _busy(payload) or _busy(last) else _steady(payload) != _steady(last)
        )
        if changed:
            self.last = payload
            self.server.protocol.notify(STATUS_NOTIFICATION, payload)
        log.debug(
            "status read in %.0f ms (%d jobs, %d ports)%s",
            (time.monotonic() - began) * 1000,
            len(payload["jobs"]),
            len(payload["ports"]),
            "; pushed" if changed else "",
        )
        return payload

    async def _run(self) -> None:
        interval = BUSY_INTERVAL_S
        while True:
            # Cleared before the check, so a command finishing during it triggers another.
            self._wake.clear()
            try:
                payload = await self.check()
                interval = BUSY_INTERVAL_S if _busy(payload) else self.idle_interval_s
            except OrchError as exc:
                log.warning("status check failed: %s", exc.message)
                interval = self.idle_interval_s
            except Exception:
                log.exception("status check failed")
                interval = self.idle_interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)


def register(server: OrchServer, watcher: StatusWatcher) -> None:
    server.changed = watcher.poke

    @server.orch_command("orch.status", StatusParams, read_only=True)
    async def status(server: OrchServer, params: StatusParams, report: Report) -> dict[str, Any]:
        return await watcher.current(fresh=params.fresh)
