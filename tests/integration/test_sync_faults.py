"""Sync under real use against a real OpenSSH sshd: editor-style saves of large files, slow
writes, resolve while running, remote drift, a batch cut short, and a sync that fails.

Each case is a regression test for issue 12 and waits on observable events (the remote
tree, `orch sync status`), never on a fixed sleep.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.app import Orchestrator
from sidecar.sync.manifest import Manifest
from sidecar.sync.service import state_dir
from tests.helpers import Sshd
from tests.integration.test_sync import Project, populate, sync_project, wait_until

pytestmark = pytest.mark.integration

MB = 1024 * 1024


@pytest.fixture
def proj(sshd: Sshd, project: Path, orch_home: Path) -> Iterator[Project]:
    yield from sync_project(sshd, project, orch_home)


def editor_save(path: Path, data: bytes, chunk: int = 0, pause: float = 0.0) -> None:
    """Write `data` to a temp file beside `path` (slowly, if asked), then rename it over."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        step = chunk or max(1, len(data))
        for i in range(0, len(data), step):
            handle.write(data[i : i + step])
            handle.flush()
            if pause:
                time.sleep(pause)
    os.replace(tmp, path)


def conflict_copies(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.orch-conflict-*"))


def alive(proj: Project) -> dict:
    status = proj.status()
    assert status["owner_pid"] and status["state"] not in ("off", "failed"), status
    return status


def test_editor_saves_of_a_20mb_file_neither_stop_the_sync_nor_conflict(proj: Project) -> None:
    populate(proj.root, 20)
    assert proj.orch("sync", "start").returncode == 0
    rng = random.Random(3)
    big = proj.root / "model.bin"
    for round_ in range(6):
        editor_save(big, rng.randbytes(20 * MB), chunk=2 * MB, pause=0.01 * (round_ % 3))
        if round_ % 2:  # sometimes the next save lands before the last one is synced
            proj.wait_synced(60)
            alive(proj)
    proj.wait_synced(60)
    status = alive(proj)
    assert status["conflicts"] == [] and conflict_copies(proj.remote) == []
    # Edited again after the sync sat idle (where 3 of 3 runs conflicted before).
    wait_until(lambda: proj.status()["state"] == "idle", what="the sync to be idle")
    time.sleep(7)  # the scenario itself: an idle period of 6-8 s between two edits
    big.write_bytes(rng.randbytes(20 * MB))
    proj.wait_synced(60)
    big.write_bytes(rng.randbytes(21 * MB))
    proj.wait_synced(60)
    status = alive(proj)
    assert status["conflicts"] == [] and conflict_copies(proj.remote) == [], status


def test_resolve_is_not_undone_by_the_running_sync(proj: Project) -> None:
    populate(proj.root, 20)
    assert proj.orch("sync", "start").returncode == 0
    rel = "pkg0/m0/f0.py"
    cmd = f"printf 'remote edit' > {proj.remote / rel}"
    subprocess.run(proj.sshd.ssh_argv(cmd), check=True, capture_output=True, timeout=30)
    (proj.root / rel).write_text("local edit")
    wait_until(lambda: proj.status()["state"] == "conflict", what="the conflict")
    assert proj.orch("sync", "resolve").returncode == 0
    assert proj.status()["conflicts"] == []
    for copy in conflict_copies(proj.remote):  # the user dealt with it
        (proj.remote / copy).unlink()
    for i in range(3):  # later batches of the same running process
        (proj.root / f"after{i}.py").write_text(f"edit {i}")
        proj.wait_synced()
        status = proj.status()
        assert status["conflicts"] == [] and status["state"] == "idle", status


def test_remote_drift_that_keeps_size_and_mtime_is_found_and_kept(proj: Project) -> None:
    populate(proj.root, 20)
    assert proj.orch("sync", "now").returncode == 0
    remote = proj.remote / "pkg1/m1/f1.py"
    local = (proj.root / "pkg1/m1/f1.py").read_bytes()
    st = remote.stat()
    remote.write_bytes(bytes(b ^ 0xFF for b in local))  # same size, other content
    os.utime(remote, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    assert not proj.in_sync()
    out = proj.orch("sync", "now")
    assert out.returncode == 0, out.stderr
    status = proj.status()
    assert status["drift"] == ["pkg1/m1/f1.py"], status
    [conflict] = status["conflicts"]
    copy = proj.remote / conflict["remote_copy"]
    assert copy.read_bytes() == bytes(b ^ 0xFF for b in local)
    copy.unlink()
    assert proj.in_sync()
    human = proj.orch("sync", "status").stdout
    assert "changed on the machine" in human and "pkg1/m1/f1.py" in human


async def test_orphan_of_a_batch_cut_short_is_removed_after_a_rename(proj: Project) -> None:
    """A batch wrote `new/a.py` and the connection dropped before its result was recorded;
    meanwhile the folder was renamed here. The write-ahead record makes the next full sync
    remove the old path there (and nothing the user made)."""
    populate(proj.root, 20)
    assert proj.orch("sync", "now").returncode == 0
    (proj.root / "new").mkdir()
    (proj.root / "new/a.py").write_text("written by the cut batch")
    orch = Orchestrator(cwd=proj.root)
    try:
        folder = state_dir(orch.context("box"))
    finally:
        await orch.close()
    manifest = Manifest(folder / "manifest.db")
    try:  # exactly what the engine records before sending that batch
        digest = hashlib.md5(b"written by the cut batch").hexdigest()
        manifest.add_pending({"new/a.py": digest})
        manifest.record_dirs(["new"], [])
    finally:
        manifest.close()
    there = proj.remote
    cmd = (  # as the machine's user: it arrived there, and the user made another file
        f"mkdir {there}/new && printf 'written by the cut batch' > {there}/new/a.py && "
        f"printf 'made on the machine' > {there}/users.txt"
    )
    subprocess.run(proj.sshd.ssh_argv(cmd), check=True, capture_output=True, timeout=30)
    (proj.root / "new").rename(proj.root / "renamed")
    out = proj.orch("sync", "now")
    assert out.returncode == 0, out.stderr
    assert not (proj.remote / "new").exists()
    assert (proj.remote / "renamed/a.py").read_text() == "written by the cut batch"
    assert (proj.remote / "users.txt").exists()  # not orch's: left alone
    (proj.remote / "users.txt").unlink()
    assert proj.in_sync() and proj.status()["conflicts"] == []


def test_a_failing_sync_says_failed_and_recovers_by_itself(
    proj: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(proj.root, 20)
    assert proj.orch("sync", "start").returncode == 0
    locked = proj.remote / "pkg2"
    owner = locked.stat()
    os.chown(locked, 0, 0)  # the machine's user may no longer write there (nor chmod it)
    try:
        (proj.root / "pkg2/big.bin").write_bytes(os.urandom(5 * MB))
        wait_until(lambda: proj.status()["state"] == "failed", 30, "the failed state")
        status = proj.status()
        assert status["owner_pid"] and "retrying in" in status["detail"], status
        assert "Permission denied" in status["detail"] or "rsync" in status["detail"]
        human = proj.orch("sync", "status").stdout
        assert "failed" in human
    finally:
        os.chown(locked, owner.st_uid, owner.st_gid)
    proj.wait_synced(60)
    wait_until(lambda: proj.status()["state"] == "idle", 30, "recovery to idle")
    # A sync owner that dies is reported as failed, not as stopped on purpose (by clients
    # that do not bring the orch agent back: with it, test_agent.py shows the sync resume).
    monkeypatch.setenv("ORCH_NO_AGENT", "1")
    pid = proj.status()["owner_pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: proj.status()["state"] == "failed", 10, "the failed state after a kill")
    assert "ended unexpectedly" in proj.status()["detail"]
