"""Jobs start from a hard-linked snapshot of the synced tree: later syncs never change their code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remote_config import job_scripts as js
from sidecar.app import Orchestrator
from sidecar.sync.snapshot import NotSynced

pytestmark = pytest.mark.integration

WAIT_THEN_READ = 'while [ ! -f "$HOME/go-$JOB" ]; do sleep 0.05; done; cat code.py'


@pytest.fixture
async def orch(orch_home: Path, project: Path) -> AsyncIterator[Orchestrator]:
    (project / "code.py").write_text("print('v1')\n")
    o = Orchestrator(cwd=project)
    await o.up()
    try:
        yield o
    finally:
        target = await o.ssh_target()
        await o.pool.run(target, "sh -s", input=js.reset_script(), timeout=30)
        await o.close()
        await o.down()


async def _finish(orch: Orchestrator, name: str) -> str:
    target = await orch.ssh_target()
    await orch.pool.run(target, f'touch "$HOME/go-{name}"')
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        jobs = {j.name: j for j in await orch.jobs_status()}
        if jobs[name].state != "running":
            return await orch.jobs_logs(name)
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {name} did not finish")


async def test_running_job_keeps_its_code_after_a_later_sync(
    orch: Orchestrator, project: Path
) -> None:
    await orch.sync_now()
    frozen = await orch.jobs_run("frozen", WAIT_THEN_READ, env={"JOB": "frozen"})
    live = await orch.jobs_run("live", WAIT_THEN_READ, env={"JOB": "live"}, snapshot=False)
    assert frozen.state == "running" and live.state == "running"

    (project / "code.py").write_text("print('v2')\n")
    await orch.sync_now()
    jobs = {j.name: j for j in await orch.jobs_status()}
    # Both started at sync generation 1; the live tree is now at generation 2.
    assert jobs["frozen"].code_version == jobs["live"].code_version == "gen:1"
    assert jobs["frozen"].code_stale is True

    assert "v1" in await _finish(orch, "frozen")
    assert "v2" in await _finish(orch, "live")


async def test_default_uses_the_live_folder_before_any_sync(orch: Orchestrator) -> None:
    target = await orch.ssh_target()
    await orch.pool.run(target, f"mkdir -p {orch.config.remote_dir}")
    job = await orch.jobs_run("unsynced", "pwd", snapshot=None)
    assert job.name == "unsynced"
    with pytest.raises(NotSynced) as caught:
        await orch.jobs_run("insist", "pwd", snapshot=True)
    assert "orch sync now" in (caught.value.hint or "")
