"""Reading and following a Fargate job's CloudWatch log stream (`orch logs NAME [-f]`).

CloudWatch's live tail (StartLiveTail) needs an event-stream session that moto does not
serve, so a followed log is polled with `get_log_events` and its forward token: each read
asks only for events after the last one seen. The pause between reads starts short and
doubles while nothing new arrives, up to `Pacing.max_s` (a quiet job costs one call every
few seconds, well under CloudWatch's per-account rate), and drops back once lines flow.
Following ends when the task has stopped and one more read found nothing new, so lines
written just before the end are never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sidecar.errors import NotFound

# One read: (forward token or None, tail or None) -> get_log_events' answer.
Read = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Pacing:
    """How often a followed log is read: `first_s` after new lines, doubling while the stream
    is quiet, never more than `max_s` apart."""

    first_s: float = 0.25
    max_s: float = 2.0

    def after(self, pause: float, got_lines: bool) -> float:
        return self.first_s if got_lines else min(self.max_s, max(pause, self.first_s) * 2)


async def stream_events(
    read: Read,
    running: Callable[[], Awaitable[bool]],
    *,
    tail: int | None,
    follow: bool,
    pacing: Pacing = Pacing(),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[str]:
    """The stream's lines as text chunks; with `follow`, until `running()` says the task has
    stopped and one more read found nothing. A stream not created yet (the container has not
    started) reads as empty."""
    token: str | None = None
    first = True
    ending = False
    pause = pacing.first_s
    while True:
        args: dict[str, Any] = {}
        if token:
            args["nextToken"] = token
        elif tail is not None and first:
            args.update(startFromHead=False, limit=max(tail, 1))
        else:
            args["startFromHead"] = True
        try:
            out = await read(args)
        except NotFound:
            out = {"events": [], "nextForwardToken": None}
        events = out.get("events", [])
        if tail == 0 and first:
            events = []
        first = False
        if events:
            yield "".join(e["message"].rstrip("\n") + "\n" for e in events)
        token = out.get("nextForwardToken") or token
        if not follow:
            return
        if not events:
            if ending:  # one more read after the task stopped found nothing: done
                return
            ending = not await running()
            if ending:
                continue
        pause = pacing.after(pause, bool(events))
        await sleep(pause)
