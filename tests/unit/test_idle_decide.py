"""The idle decision (remote_config/idle.py): property tests over generated signal histories,
plus the duration parser and the status line."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remote_config.idle import (
    Decision,
    IdlePolicy,
    Signals,
    decide,
    format_duration,
    initial_state,
    parse_duration,
    status_line,
)


@dataclass
class Check:
    dt: float  # seconds since the previous check
    jobs: int
    active: tuple[str, ...]
    event_ago: float | None  # an event signal this long before the check


checks = st.builds(
    Check,
    dt=st.floats(min_value=0.5, max_value=120),
    jobs=st.integers(0, 3) | st.just(0),
    active=st.sampled_from([(), (), ("cpu 80%",), ("tmux client",), ("check failed",)]),
    event_ago=st.none() | st.floats(min_value=0, max_value=600),
)
policies = st.builds(
    IdlePolicy,
    idle_stop_s=st.none() | st.floats(min_value=1, max_value=3600),
    warn_s=st.floats(min_value=0, max_value=600),
    ttl_s=st.none() | st.floats(min_value=1, max_value=20_000),
    ttl_hard=st.booleans(),
    interval_s=st.floats(min_value=0.5, max_value=120),
)


def run(
    history: list[Check], policy: IdlePolicy, t0: float = 1_000.0
) -> list[tuple[float, Check, Decision]]:
    state = initial_state(t0)
    now = t0
    out = []
    for check in history:
        now += check.dt
        event = None if check.event_ago is None else max(t0, now - check.event_ago)
        signals = Signals(check.jobs, check.active, event, "input" if event else "")
        decision, state = decide(state, signals, now, policy)
        out.append((now, check, decision))
    return out


@settings(max_examples=3000, deadline=None)
@given(st.lists(checks, min_size=1, max_size=60), policies)
def test_never_stops_while_a_job_runs(history: list[Check], policy: IdlePolicy) -> None:
    for _, check, decision in run(history, policy):
        if check.jobs and not policy.ttl_hard:
            assert decision.action != "stop", decision


@settings(max_examples=3000, deadline=None)
@given(
    st.lists(checks, min_size=0, max_size=30),
    st.floats(min_value=1, max_value=3600),
    st.floats(min_value=0.5, max_value=120),
    st.floats(min_value=0, max_value=600),
    st.none() | st.floats(min_value=1, max_value=20_000),
)
def test_stops_within_timeout_plus_one_interval_once_quiet(
    busy: list[Check], timeout: float, interval: float, warn: float, ttl: float | None
) -> None:
    """After any history, checks every `interval` with every signal quiet end in a stop no
    later than the last activity + timeout + one interval, and never before the timeout."""
    policy = IdlePolicy(idle_stop_s=timeout, warn_s=warn, ttl_s=ttl, interval_s=interval)
    quiet = [Check(interval, 0, (), None)] * (int(timeout / interval) + 3)
    results = run(busy + quiet, policy)
    t0 = 1_000.0
    last_activity = t0
    for i, (now, check, decision) in enumerate(results):
        if check.jobs or check.active:
            last_activity = now
        elif check.event_ago is not None:
            last_activity = max(last_activity, min(now, max(t0, now - check.event_ago)))
        if decision.action != "stop":
            continue
        if decision.rule == "idle":
            assert now >= last_activity + timeout - 1e-6  # never early
            if i >= len(busy):  # checks every interval since the quiet began: never late
                assert now <= last_activity + timeout + interval + 1e-6
        else:
            assert ttl is not None and now >= t0 + ttl - 1e-6
        return
    raise AssertionError("never stopped")


@settings(max_examples=1500, deadline=None)
@given(st.lists(checks, min_size=1, max_size=60), policies)
def test_ttl_waits_for_jobs_unless_hard(history: list[Check], policy: IdlePolicy) -> None:
    t0 = 1_000.0
    for now, check, decision in run(history, policy, t0):
        ttl_over = policy.ttl_s is not None and now >= t0 + policy.ttl_s
        if decision.action == "stop" and decision.rule == "ttl":
            assert ttl_over
        if ttl_over and check.jobs and not policy.ttl_hard:
            assert decision.action == "warn"
        if ttl_over and (policy.ttl_hard or not check.jobs):
            assert decision.action == "stop"


def test_warns_before_stopping_with_the_status_line() -> None:
    policy = IdlePolicy(idle_stop_s=30 * 60, warn_s=5 * 60, interval_s=60)
    state = initial_state(0.0)
    seen: list[tuple[float, str]] = []
    for minute in range(1, 32):
        decision, state = decide(state, Signals(), minute * 60.0, policy)
        seen.append((minute, decision.action))
        if minute == 25:
            assert decision.action == "warn"
            assert status_line(decision.idle_s, decision.stops_at, minute * 60.0) == (
                "idle 25 min · stops in 5 min"
            )
    assert [m for m, a in seen if a == "warn"] == [25, 26, 27, 28, 29]
    assert [m for m, a in seen if a == "stop"] == [30, 31]


def test_an_event_resets_the_timer_and_names_it() -> None:
    policy = IdlePolicy(idle_stop_s=600, interval_s=60)
    state = initial_state(0.0)
    decision, state = decide(state, Signals(), 540.0, policy)
    assert decision.action == "warn"
    decision, state = decide(
        state, Signals(last_event=530.0, last_event_what="keep"), 600.0, policy
    )
    assert decision.action == "keep"
    assert decision.idle_since == 530.0
    assert "keep" in decision.reason
    # An event stamped in the future (clock skew) counts as now, never later.
    decision, state = decide(state, Signals(last_event=9_999.0), 660.0, policy)
    assert decision.idle_since == 660.0


def test_off_policy_keeps_and_reports_idle_time() -> None:
    decision, _ = decide(initial_state(0.0), Signals(), 7200.0, IdlePolicy(idle_stop_s=None))
    assert decision.action == "keep"
    assert decision.idle_s == 7200.0
    assert decision.stops_at is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("24h", 86400), ("1h30m", 5400), ("90s", 90), ("2d", 172800), ("1.5h", 5400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "m", "30 minutes", "-5m", "0m", "1h 30m", "5x", "1e3s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(5) == "5 s"
    assert format_duration(25 * 60 + 10) == "25 min"
    assert format_duration(3 * 3600 + 5 * 60) == "3 h 5 min"
    assert format_duration(7200) == "2 h"
