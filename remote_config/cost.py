"""The cost guard's arithmetic (pure): what machines cost today, from the runs orch saw.

The laptop cannot watch a machine all the time (it sleeps), but every time it looks (a status
refresh, `orch machines`) a running machine tells it when it started (its uptime) and what it
costs per hour. Each look is an *observation*; `observe` folds it into a list of `Run`s, one
per machine boot and price: from the boot (or the moment the price changed) to the last time
the machine was seen running. A run is paid for only up to its last sighting: a machine that
stopped while nobody looked costs at most until it was last seen (never more than it did).

"Today" is the laptop's local calendar day: from local midnight (`day_start`, DST-aware) to
now. A machine running over midnight has the hours before midnight counted to yesterday and
those after to today (`spend` cuts each run at the window's edges).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

SAME_BOOT_S = 120.0  # two sightings whose start times differ by less are the same boot
KEEP_S = 8 * 86400.0  # runs last seen longer ago are forgotten


@dataclass(frozen=True)
class Run:
    """A machine running at one price: [start, seen] in epoch seconds, `price` USD/h."""

    key: str  # the machine: "project/name" (EC2 instances of other projects: "ec2:i-…")
    boot: float  # when the machine started (from its uptime)
    start: float  # when this run starts counting (the boot, or a price change)
    seen: float  # the last time the machine was seen running at this price
    price: float

    def cost_between(self, since: float, until: float) -> float:
        overlap = min(self.seen, until) - max(self.start, since)
        return self.price * overlap / 3600.0 if overlap > 0 else 0.0


def observe(runs: Sequence[Run], key: str, boot: float, now: float, price: float) -> list[Run]:
    """The runs after seeing machine `key` running at `now`, started at `boot`, at `price`."""
    out = list(runs)
    mine = [i for i, r in enumerate(out) if r.key == key]
    last = out[mine[-1]] if mine else None
    if last is not None and abs(last.boot - boot) < SAME_BOOT_S:
        if last.price == price:
            out[mine[-1]] = replace(last, seen=max(last.seen, now))
        elif now > last.seen:
            out.append(Run(key, last.boot, last.seen, now, price))
        return out
    # A new boot; never count a moment twice, whatever the clocks said before.
    start = max(boot, last.seen) if last is not None else boot
    out.append(Run(key, boot, min(start, now), now, price))
    return out


def spend(runs: Sequence[Run], since: float, until: float) -> float:
    """USD spent between `since` and `until` by every run."""
    return sum(r.cost_between(since, until) for r in runs)


def prune(runs: Sequence[Run], now: float) -> list[Run]:
    return [r for r in runs if r.seen >= now - KEEP_S]


def day_start(now: float, tz: dt.tzinfo | None = None) -> float:
    """Epoch seconds of the local midnight that began the day holding `now` (`tz`: a zone,
    default the system's local time). On a day whose midnight does not exist (a DST jump at
    00:00) it is the first moment of that day."""
    if tz is None:
        local = dt.datetime.fromtimestamp(now)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return min(midnight.timestamp(), now)
    local = dt.datetime.fromtimestamp(now, tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # Round-trip through UTC: a wall time in a DST gap maps to the moment after the gap.
    start = midnight.astimezone(dt.UTC).timestamp()
    return min(start, now)


def budget_line(spent: float, budget: float | None) -> str:
    """The status line: "$3.21 today" or "$21.40 today, over the $20.00 daily budget"."""
    line = f"${spent:.2f} today"
    if budget is None:
        return line
    if spent >= budget:
        return f"{line}, over the ${budget:.2f} daily budget"
    return f"{line} of a ${budget:.2f} daily budget"
