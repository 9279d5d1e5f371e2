"""The cost guard's ledger on the laptop: what running machines cost today, and the budget.

Every status read and `orch machines` records each running machine with a price (its start
from the uptime, its $/h) in `$ORCH_HOME/cost/runs.json` (0600, in a 0700 folder, written
atomically under a lock: the language server and the CLI both write it). The arithmetic is
pure (`remote_config/cost.py`); this module only reads, locks and writes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

from pydantic import BaseModel, Field

from remote_config import cost

MACHINE_STATES_RUNNING = ("running", "pending")


class Sighting(BaseModel):
    """A machine seen running: who (`key`), since when (epoch), at what price (USD/h)."""

    key: str
    boot: float
    price: float


class CostStatus(BaseModel):
    """Spend today across every machine orch saw running (`orch status`, the status bar)."""

    spend_today: float = Field(description="USD since local midnight, all machines.")
    day_start: float = Field(description="Epoch seconds of the local midnight counted from.")
    daily_budget: float | None = None  # USD, `[cost] daily_budget`
    over_budget: bool = False
    line: str = ""  # "$3.21 today of a $20.00 daily budget"


def ledger_path(home: Path) -> Path:
    return home / "cost" / "runs.json"


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[Path]:
    path = ledger_path(home)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    with open(path.parent / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load(path: Path) -> list[cost.Run]:
    """The runs on file; a missing or unreadable ledger is empty (it only ever undercounts)."""
    try:
        raw = json.loads(path.read_text())
        return [cost.Run(**r) for r in raw.get("runs", [])]
    except (OSError, ValueError, TypeError):
        return []


def _save(path: Path, runs: list[cost.Run]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"version": 1, "runs": [asdict(r) for r in runs]}, out)
    os.replace(tmp, path)


def record(
    home: Path, sightings: Iterable[Sighting], budget: float | None, now: float | None = None
) -> CostStatus:
    """Fold `sightings` into the ledger and say what today cost so far."""
    now = time.time() if now is None else now
    seen = list(sightings)
    with _locked(home) as path:
        runs = load(path)
        for s in seen:
            runs = cost.observe(runs, s.key, s.boot, now, s.price)
        runs = cost.prune(runs, now)
        if seen or path.exists():
            _save(path, runs)
    since = cost.day_start(now)
    spent = round(cost.spend(runs, since, now), 4)
    over = budget is not None and spent >= budget
    return CostStatus(
        spend_today=spent,
        day_start=since,
        daily_budget=budget,
        over_budget=over,
        line=cost.budget_line(spent, budget),
    )


def sighting(
    key: str, state: str, uptime_s: float | None, price: float | None, now: float | None = None
) -> Sighting | None:
    """A sighting of a machine in `state`, or None when it is not running or has no price."""
    if state not in MACHINE_STATES_RUNNING or uptime_s is None or price is None:
        return None
    now = time.time() if now is None else now
    return Sighting(key=key, boot=now - uptime_s, price=price)
