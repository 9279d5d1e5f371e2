"""The cost guard on the embedded local machine, priced through orch.toml (`price_per_hour`).

At $72/h the machine costs two cents a second, so a budget of a few cents is crossed within the
test: `orch machines`, `orch status` (text and --json) and the ledger are checked for real.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.app import Orchestrator
from tests.helpers import run_orch

pytestmark = pytest.mark.integration

PRICE = 72.0  # USD/h: two cents per second
BUDGET = 0.03


@pytest.fixture
async def orch(orch_home: Path, project: Path) -> AsyncIterator[Orchestrator]:
    (project / "orch.toml").write_text(
        f"[machines.local]\nprice_per_hour = {PRICE}\n[cost]\ndaily_budget = {BUDGET}\n"
    )
    orch = Orchestrator(cwd=project)
    assert (await orch.up()).state == "running"
    try:
        yield orch
    finally:
        await orch.close()
        await orch.down()


async def test_spend_today_crosses_the_budget(
    orch: Orchestrator, project: Path, orch_home: Path
) -> None:
    first = await orch.status()
    assert first.cost is not None and not first.cost.over_budget
    assert first.machine.price_per_hour == PRICE
    await asyncio.sleep(max(0.0, 2.2 - (first.machine.uptime_s or 0.0)))  # > 4 cents by now

    listed = run_orch("machines", "--json", cwd=project, env={"AWS_PROFILE": ""})
    assert listed.returncode == 0, listed.stderr
    overview = json.loads(listed.stdout)
    (row,) = [m for m in overview["machines"] if m["machine"] == "local"]
    assert row["kind"] == "local" and row["state"] == "running"
    assert row["price_per_hour"] == PRICE and row["cost_so_far"] >= BUDGET
    assert overview["cost"]["over_budget"] and overview["cost"]["daily_budget"] == BUDGET
    assert "EC2 instances not looked for" in overview["notes"][0]

    text = run_orch("status", cwd=project)
    assert text.returncode == 0, text.stderr
    assert f"over the ${BUDGET:.2f} daily budget" in text.stdout
    assert "warning: the daily budget is spent" in text.stderr
    as_json = json.loads(run_orch("status", "--json", cwd=project).stdout)
    assert as_json["cost"]["over_budget"] and as_json["cost"]["spend_today"] >= BUDGET

    ledger = orch_home / "cost" / "runs.json"
    assert stat.S_IMODE(os.stat(ledger).st_mode) == 0o600
    (run,) = json.loads(ledger.read_text())["runs"]
    assert run["price"] == PRICE and run["seen"] - run["start"] >= 2.0

    # Stopped: the spend stays (what ran today was paid for) and stops growing.
    await orch.down()
    after = await orch.status()
    assert after.machine.state == "stopped" and after.cost is not None
    later = await orch.status()
    assert later.cost is not None and later.cost.spend_today == after.cost.spend_today
    assert after.cost.spend_today >= BUDGET
