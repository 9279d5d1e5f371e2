"""When a machine is idle, and what to do about it: a pure decision (no I/O, stdlib only).

The idle agent on the machine gathers signals every check interval and asks `decide` what to
do; this module is also copied verbatim to the machine next to the agent, so it must import
nothing but the standard library. Given the previous `IdleState`, this check's `Signals`, the
clock and the `IdlePolicy`, `decide` returns a `Decision` (keep / warn / stop, with the
reason) and the next state. The invariants (property-tested in tests/unit/test_idle_decide.py):
it never returns stop while an orch job runs (except a TTL with `ttl_hard`), and once every
signal is quiet it returns stop within the idle timeout plus one check interval.

Idle is measured from the last moment something was seen active: a check that saw a job, an
attached client, CPU load (or a failed check, which counts as active), or the latest event
time a signal carries (terminal input, a sync batch, `orch idle keep`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

DEFAULT_IDLE_STOP_S = 30 * 60.0
DEFAULT_WARN_S = 5 * 60.0
DEFAULT_INTERVAL_S = 60.0

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?[smhd])+$")


def parse_duration(text: str) -> float:
    """'30m', '24h', '1h30m', '90s', '2d' -> seconds; anything else raises ValueError."""
    value = text.strip().lower()
    if not _WHOLE.match(value):
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit, e.g. '30m', '24h', "
            "'1h30m' or '90s' (units: s, m, h, d)"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(value))
    if seconds <= 0:
        raise ValueError(f"{text!r}: the duration must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human duration: '45 s', '25 min', '3 h 5 min'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    h, m = divmod(s // 60, 60)
    return f"{h} h {m} min" if m else f"{h} h"


@dataclass(frozen=True)
class IdlePolicy:
    """What the machine's config asks for, in seconds (None: that rule is off)."""

    idle_stop_s: float | None = DEFAULT_IDLE_STOP_S
    warn_s: float = DEFAULT_WARN_S  # warn this long before acting
    ttl_s: float | None = None
    ttl_hard: bool = False
    interval_s: float = DEFAULT_INTERVAL_S

    def warn_before(self, timeout: float) -> float:
        """The warning lead for a timeout: `warn_s`, but at most half the timeout."""
        return min(self.warn_s, timeout / 2)


@dataclass(frozen=True)
class Signals:
    """One check's observations. `active` names what is active right now (a job counts via
    `jobs`); `last_event` is the latest time an event signal carries (input, sync, keep)."""

    jobs: int = 0
    active: tuple[str, ...] = ()
    last_event: float | None = None
    last_event_what: str = ""


@dataclass(frozen=True)
class IdleState:
    started_at: float  # when the machine (its agent) started: the TTL counts from here
    last_active: float  # the last time something was seen active
    last_active_what: str = "start"


@dataclass(frozen=True)
class Decision:
    action: str  # "keep" | "warn" | "stop"
    reason: str
    idle_s: float
    idle_since: float
    stops_at: float | None = None  # when the machine will stop if nothing changes
    rule: str = ""  # "idle" | "ttl" | "" (what the warning or stop is about)
    signals: dict[str, object] = field(default_factory=dict)


def initial_state(now: float) -> IdleState:
    return IdleState(started_at=now, last_active=now)


def _advance(state: IdleState, signals: Signals, now: float) -> IdleState:
    busy = ([f"{signals.jobs} job(s) running"] if signals.jobs else []) + list(signals.active)
    if busy:
        return replace(state, last_active=now, last_active_what=", ".join(busy))
    if signals.last_event is not None and signals.last_event > state.last_active:
        when = min(signals.last_event, now)  # an event from a skewed clock never lies ahead
        return replace(state, last_active=when, last_active_what=signals.last_event_what)
    return state


def decide(
    state: IdleState, signals: Signals, now: float, policy: IdlePolicy
) -> tuple[Decision, IdleState]:
    """keep / warn / stop for this check, and the state the next check starts from."""
    state = _advance(state, signals, now)
    idle = _idle_decision(state, signals, now, policy)
    ttl = _ttl_decision(state, signals, now, policy)
    choices = [d for d in (ttl, idle) if d is not None]
    for action in ("stop", "warn"):  # the most urgent; of two warnings, the earlier stop
        found = [d for d in choices if d.action == action]
        if found:
            return min(found, key=lambda d: now if d.stops_at is None else d.stops_at), state
    return idle or _make("keep", "idle stop is off", state, signals, now), state


def _make(
    action: str,
    reason: str,
    state: IdleState,
    signals: Signals,
    now: float,
    stops_at: float | None = None,
    rule: str = "",
) -> Decision:
    idle_s = max(0.0, now - state.last_active)
    return Decision(action, reason, idle_s, state.last_active, stops_at, rule, _summary(signals))


def _idle_decision(
    state: IdleState, signals: Signals, now: float, policy: IdlePolicy
) -> Decision | None:
    timeout = policy.idle_stop_s
    if timeout is None:
        return None
    if signals.jobs or signals.active:
        return _make("keep", f"active: {state.last_active_what}", state, signals, now)
    idle_s = max(0.0, now - state.last_active)
    stops_at = state.last_active + timeout
    idle_for = format_duration(idle_s)
    if idle_s >= timeout:
        reason = f"idle {idle_for} (limit {format_duration(timeout)})"
        return _make("stop", reason, state, signals, now, stops_at, "idle")
    if idle_s >= timeout - policy.warn_before(timeout):
        reason = f"idle {idle_for} · stops in {format_duration(stops_at - now)}"
        return _make("warn", reason, state, signals, now, stops_at, "idle")
    reason = f"idle {idle_for} (last: {state.last_active_what})"
    return _make("keep", reason, state, signals, now, stops_at)


def _ttl_decision(
    state: IdleState, signals: Signals, now: float, policy: IdlePolicy
) -> Decision | None:
    ttl = policy.ttl_s
    if ttl is None:
        return None
    ends_at = state.started_at + ttl
    if now >= ends_at:
        if signals.jobs and not policy.ttl_hard:
            reason = (
                f"lifetime {format_duration(ttl)} is over; waiting for {signals.jobs} "
                "running job(s) (ttl_hard is off)"
            )
            return _make("warn", reason, state, signals, now, None, "ttl")
        reason = f"lifetime {format_duration(ttl)} is over"
        return _make("stop", reason, state, signals, now, ends_at, "ttl")
    if now >= ends_at - policy.warn_before(ttl):
        reason = f"lifetime ends in {format_duration(ends_at - now)}"
        return _make("warn", reason, state, signals, now, ends_at, "ttl")
    return None


def _summary(signals: Signals) -> dict[str, object]:
    return {
        "jobs": signals.jobs,
        "active": list(signals.active),
        "last_event": signals.last_event,
        "last_event_what": signals.last_event_what,
    }


def status_line(decision_idle_s: float, stops_at: float | None, now: float) -> str:
    """'idle 25 min · stops in 5 min' (or just 'idle 25 min' when nothing will stop it)."""
    text = f"idle {format_duration(decision_idle_s)}"
    if stops_at is not None:
        text += f" · stops in {format_duration(max(0.0, stops_at - now))}"
    return text
