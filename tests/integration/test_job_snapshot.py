"""Jobs start from a hard-linked snapshot of the synced tree: later syncs never change their code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remote_config import job_scripts as js
from sidecar.app import Orchestrator
from sidecar.sync.snapshot import NotSynced, StaleTree

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
    first = (await orch.sync_now()).token
    frozen = await orch.jobs_run("frozen", WAIT_THEN_READ, env={"JOB": "frozen"})
    live = await orch.jobs_run("live", WAIT_THEN_READ, env={"JOB": "live"}, snapshot=False)
    assert frozen.state == "running" and live.state == "running"
    assert (frozen.mode, live.mode) == ("snapshot", "live")

    (project / "code.py").write_text("print('v2')\n")
    await orch.sync_now()
    jobs = {j.name: j for j in await orch.jobs_status()}
    # Both started at sync generation 1; the live tree is now at generation 2.
    assert jobs["frozen"].code_version == jobs["live"].code_version == f"gen:{first}"
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


async def test_lost_sync_state_never_reuses_an_old_snapshot(
    orch: Orchestrator, project: Path, orch_home: Path
) -> None:
    """The laptop's sync state is lost (a new laptop, $ORCH_HOME/sync removed): the remote's
    tree is not one this laptop's sync wrote, so no job starts from it until it syncs, and
    the job from before says its code is stale once the new sync lands."""
    import shutil

    await orch.sync_now()
    old = await orch.jobs_run("old", WAIT_THEN_READ, env={"JOB": "old"})
    assert old.state == "running"
    shutil.rmtree(orch_home / "sync")
    (project / "code.py").write_text("print('v2')\n")
    for snapshot in (None, True):
        with pytest.raises(StaleTree) as caught:
            await orch.jobs_run("new", "cat code.py", snapshot=snapshot)
        assert "orch sync now" in (caught.value.hint or "")
    status = await orch.sync_now()
    assert status.token and status.generation == 1  # a fresh sync: generation 1 again
    new = await orch.jobs_run("new", WAIT_THEN_READ, env={"JOB": "new"})
    assert new.mode == "snapshot"
    jobs = {j.name: j for j in await orch.jobs_status()}
    assert jobs["old"].code_stale is True and jobs["new"].code_stale is False
    assert jobs["new"].code_version == f"gen:{status.token}" != jobs["old"].code_version
    assert "v2" in await _finish(orch, "new")
    assert "v1" in await _finish(orch, "old")


async def test_same_named_project_folders_never_share_a_snapshot(
    orch: Orchestrator, project: Path, tmp_path: Path
) -> None:
    """Two folders named alike sync to the same remote folder: a job of the first never
    starts from the second's tree (nor from a snapshot the second made)."""
    await orch.sync_now()
    twin_root = tmp_path / "elsewhere" / project.name
    twin_root.mkdir(parents=True)
    (twin_root / "code.py").write_text("print('twin')\n")
    twin = Orchestrator(cwd=twin_root)
    try:
        assert twin.config.remote_dir == orch.config.remote_dir
        await twin.sync_now()
        twin_path, _ = await twin.prepare_snapshot()
        with pytest.raises(StaleTree):
            await orch.jobs_run("mine", "cat code.py")
        await orch.sync_now()  # this folder's tree again (the twin's edit kept as a conflict)
        mine_path, _ = await orch.prepare_snapshot()
        assert mine_path != twin_path
        job = await orch.jobs_run("mine", WAIT_THEN_READ, env={"JOB": "mine"})
        assert job.state == "running"
        assert "v1" in await _finish(orch, "mine")
    finally:
        await twin.close()


async def test_live_jobs_see_each_save(orch: Orchestrator, project: Path) -> None:
    """The dev-server loop: a job named in `[jobs] live` (or started with --live) runs in the
    project folder, so a synced save reaches it while it runs; status says which mode."""
    from tests.helpers import run_orch

    (project / "orch.toml").write_text('[jobs]\nlive = ["dev-*"]\n')
    orch.reload_config()
    await orch.sync_now()
    loop = "while :; do cat code.py; sleep 0.1; done"
    dev = await orch.jobs_run("dev-server", loop)
    batch = await orch.jobs_run("batch", WAIT_THEN_READ, env={"JOB": "batch"})
    assert (dev.mode, batch.mode) == ("live", "snapshot")
    cli = run_orch("run", "--live", "web", "--", "sh", "-c", loop, cwd=project)
    assert cli.returncode == 0, cli.stderr
    (project / "code.py").write_text("print('v2')\n")
    await orch.sync_now()
    deadline = time.monotonic() + 20
    while "v2" not in await orch.jobs_logs("dev-server", tail=2):
        assert time.monotonic() < deadline, "the live job never saw the save"
        await asyncio.sleep(0.1)
    while "v2" not in await orch.jobs_logs("web", tail=2):
        assert time.monotonic() < deadline, "the --live job never saw the save"
        await asyncio.sleep(0.1)
    table = run_orch("status", cwd=project).stdout
    rows = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    assert "live" in rows["dev-server"] and "live" in rows["web"]
    assert "snapshot" in rows["batch"] and "stale" in rows["batch"]
    assert "v1" in await _finish(orch, "batch")
    for name in ("dev-server", "web"):
        await orch.jobs_stop(name)
