"""The cost guard's pure arithmetic (remote_config/cost.py) and its ledger file."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from remote_config import cost
from remote_config.model import OrchConfig
from sidecar.machines import inventory, spend
from sidecar.machines.ec2.models import FleetEntry

BERLIN = ZoneInfo("Europe/Berlin")
H = 3600.0


def at(*args: int, tz: dt.tzinfo = BERLIN) -> float:
    return dt.datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


def test_a_machine_over_midnight_counts_only_after_midnight_today() -> None:
    boot = at(2026, 3, 1, 22, 0)
    runs = cost.observe([], "p/gpu", boot, at(2026, 3, 2, 1, 0), price=2.0)
    midnight = cost.day_start(at(2026, 3, 2, 1, 0), BERLIN)
    assert midnight == at(2026, 3, 2, 0, 0)
    assert cost.spend(runs, midnight, at(2026, 3, 2, 1, 0)) == 2.0  # 1 h of 3 today
    assert cost.spend(runs, midnight - 86400, midnight) == 4.0  # the 2 h of yesterday


def test_day_start_across_daylight_saving() -> None:
    # The day clocks jump forward has 23 hours; local midnight is still its start.
    now = at(2026, 3, 29, 12, 0)
    assert cost.day_start(now, BERLIN) == at(2026, 3, 29, 0, 0)
    assert now - cost.day_start(now, BERLIN) == 11 * H
    # A zone whose DST jump is at midnight (the day starts at 01:00 wall time).
    santiago = ZoneInfo("America/Santiago")
    start = cost.day_start(at(2026, 9, 6, 12, 0, tz=santiago), santiago)
    assert dt.datetime.fromtimestamp(start, santiago).date() == dt.date(2026, 9, 6)
    assert dt.datetime.fromtimestamp(start - 1, santiago).date() == dt.date(2026, 9, 5)


def test_sightings_extend_a_run_and_a_new_boot_starts_another() -> None:
    runs = cost.observe([], "k", boot=0.0, now=H, price=1.0)
    runs = cost.observe(runs, "k", boot=30.0, now=2 * H, price=1.0)  # uptime jitter
    assert len(runs) == 1 and runs[0].seen == 2 * H
    # Stopped unseen, started again at 5 h: the gap is not paid for.
    runs = cost.observe(runs, "k", boot=5 * H, now=6 * H, price=1.0)
    assert len(runs) == 2
    assert cost.spend(runs, 0.0, 6 * H) == 3.0
    # A spot price change starts a new segment at the last sighting.
    runs = cost.observe(runs, "k", boot=5 * H, now=7 * H, price=3.0)
    assert cost.spend(runs, 0.0, 7 * H) == 6.0


def test_a_later_sighting_never_shrinks_what_was_seen() -> None:
    runs = cost.observe([], "k", boot=0.0, now=2 * H, price=1.0)
    runs = cost.observe(runs, "k", boot=0.0, now=H, price=1.0)  # an older read, late
    assert runs[0].seen == 2 * H


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.floats(0, 50 * H),
            st.floats(0, 5 * H),
            st.sampled_from([0.5, 1.0, 2.5]),
        ),
        max_size=30,
    )
)
def test_never_more_than_the_dearest_price_times_the_window(
    seen: list[tuple[str, float, float, float]],
) -> None:
    """However sightings arrive, no moment of one machine is paid for twice: spend within
    any window is at most the window's length times the dearest price, per machine."""
    runs: list[cost.Run] = []
    now = 0.0
    for key, step, uptime, price in seen:
        now += step
        runs = cost.observe(runs, key, now - uptime, now, price)
    for key in ("a", "b"):
        mine = [r for r in runs if r.key == key]
        assert cost.spend(mine, 0.0, now) <= 2.5 * now / H + 1e-6
        for r in mine:
            assert r.start <= r.seen


def test_budget_lines() -> None:
    assert cost.budget_line(3.214, None) == "$3.21 today"
    assert cost.budget_line(3.2, 20.0) == "$3.20 today of a $20.00 daily budget"
    assert cost.budget_line(21.4, 20.0) == "$21.40 today, over the $20.00 daily budget"


def test_budget_in_orch_toml() -> None:
    assert OrchConfig.model_validate({"cost": {"daily_budget": 20}}).cost.daily_budget == 20
    assert OrchConfig().cost.daily_budget is None


def test_ledger_is_private_and_adds_up(tmp_path: Path) -> None:
    now = at(2026, 3, 2, 10, 0)
    seen = [spend.Sighting(key="p/local", boot=now - 2 * H, price=1.5)]
    status = spend.record(tmp_path, seen, budget=2.0, now=now)
    assert status.spend_today == 3.0 and status.over_budget
    path = spend.ledger_path(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert json.loads(path.read_text())["runs"][0]["key"] == "p/local"
    # read again later without a sighting: what was seen stays counted, nothing more
    again = spend.record(tmp_path, [], budget=None, now=now + H)
    assert again.spend_today == 3.0 and not again.over_budget
    path.write_text("{broken")
    assert spend.record(tmp_path, [], budget=None, now=now).spend_today == 0.0


def test_inventory_merges_an_instance_into_its_own_row() -> None:
    own = inventory.MachineEntry(
        project="p", machine="gpu", kind="ec2", state="running", configured=True, uptime_s=60.0
    )
    fleet = [
        FleetEntry(
            region="us-east-1",
            instance_id="i-1",
            project="p",
            machine="gpu",
            owner=None,
            state="running",
            instance_type="g4dn.xlarge",
            market="spot",
            uptime_s=60.0,
            price_per_hour=0.3,
        ),
        FleetEntry(
            region="us-east-1",
            instance_id="i-2",
            project="other",
            machine="gpu",
            owner=None,
            state="running",
            instance_type="t3.large",
            market="on-demand",
            uptime_s=60.0,
            price_per_hour=0.08,
        ),
    ]
    rows = inventory.merge("p", [own], fleet)
    assert [(r.project, r.instance_id, r.configured) for r in rows] == [
        ("p", "i-1", True),
        ("other", "i-2", False),
    ]
    assert {s.key for s in inventory.sightings(rows)} == {"other/gpu"}  # own row: no price
    assert inventory.run_key(None, None, "i-9") == "ec2:i-9"


def test_aws_configured_never_asks_the_network(tmp_path: Path) -> None:
    assert not inventory.aws_configured({}, tmp_path)
    assert inventory.aws_configured({"AWS_PROFILE": "dev"}, tmp_path)
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[default]\n")
    assert inventory.aws_configured({}, tmp_path)
