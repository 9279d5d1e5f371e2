"""`orch down` while jobs run warns, lists them and needs --force; `orch status` while the
machine is down says the jobs are unknown (the local machine, through the real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.app import Orchestrator
from tests.helpers import run_orch

pytestmark = pytest.mark.integration


async def test_down_with_running_jobs_needs_force(local_orch: Orchestrator, project: Path) -> None:
    orch = local_orch
    await orch.jobs_run("trainer", "sleep 120", snapshot=False)
    await orch.jobs_run("done", "true", snapshot=False)
    refused = run_orch("down", cwd=project)
    assert refused.returncode == 6, refused.stderr
    assert "trainer" in refused.stderr and "--force" in refused.stderr
    assert "done" not in refused.stderr.split("still run")[1].split(";")[0]
    status = json.loads(run_orch("status", "--json", cwd=project).stdout)
    assert status["machine"]["state"] == "running"  # nothing was stopped
    forced = run_orch("down", "--force", cwd=project)
    assert forced.returncode == 0, forced.stderr
    down = json.loads(run_orch("status", "--json", cwd=project).stdout)
    assert down["machine"]["state"] != "running" and down["jobs"] == []
    assert "jobs unknown until the machine is up" in down["machine"]["detail"]
    human = run_orch("status", cwd=project).stdout
    assert "jobs unknown until the machine is up" in human
    # The local machine's jobs outlive its server: up again, they are there.
    await orch.up()
    jobs = {j.name: j for j in await orch.jobs_status()}
    assert jobs["trainer"].state == "running"
    await orch.jobs_stop("trainer")
    assert run_orch("down", cwd=project).returncode == 0  # nothing runs: no question
