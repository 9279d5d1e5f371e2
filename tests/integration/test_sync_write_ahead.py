"""The write-ahead record of folders: every folder a batch may create on the machine is
recorded before the batch is sent, so a folder gone here later is removed there (issue 12,
item 4: no orphan after a cut, a race or a lost event); and a batch of a session that was cut
is never applied after the next session's reconcile (no stale batch).

These drive the real sync engine against the embedded local machine (real OpenSSH rsync and
the helper over SSH) with crafted batches of dirty paths, which is how the races of the
chaos test (`test_sync_chaos.py`) reach the engine: a batch may name a new folder only by a
deeper path (the tree changed while it was planned), and the folder may be gone by the time
the next batch looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remote_config.sync import SMALL_FILE_MAX_BYTES, Plan
from sidecar.sync.engine import SyncEngine
from sidecar.sync.manifest import Manifest
from sidecar.sync.service import state_dir
from tests.helpers import _alive
from tests.integration.test_sync import _close_masters, dirs_of, tree

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(orch_home: Path, project: Path) -> AsyncIterator[SyncEngine]:
    """A sync engine for `project` and the local machine, its first copy done."""
    from sidecar.app import Orchestrator

    (project / "orch.toml").write_text(
        '[project]\ndefault_machine = "local"\n[sync]\nremote_dir = "~/work/wa"\n'
        '[machines.local]\nkind = "local"\nidle_stop = "off"\n'
    )
    (project / "keep.txt").write_text("kept\n")
    orch = Orchestrator(cwd=project)
    await orch.up()
    ctx = orch.context()
    manifest = Manifest(state_dir(ctx) / "manifest.db")
    try:
        target = await ctx.target()
        await ctx.write_ssh_config()
        engine = SyncEngine(ctx.config, ctx.layout, ctx.pool, target, manifest)
        await engine.full_sync()
        try:
            yield engine
        finally:
            engine.disconnect()
    finally:
        manifest.close()
        await orch.close()
        _close_masters(orch_home)
        await orch.down()


def _remote(engine: SyncEngine, orch_home: Path) -> Path:
    return orch_home / "machines" / "local" / "home" / engine.remote_dir.removeprefix("~/")


@pytest.mark.parametrize("transport", ["helper", "rsync"])
async def test_a_folder_made_only_as_a_parent_is_removed_once_gone_here(
    engine: SyncEngine, orch_home: Path, transport: str
) -> None:
    root, remote = Path(engine.root), _remote(engine, orch_home)
    (root / "a" / "b").mkdir(parents=True)
    dirty = {"a/b"}  # `a` itself is in another batch (or its event was lost)
    if transport == "rsync":  # a file too large for the helper sends the batch by rsync
        (root / "big.bin").write_bytes(os.urandom(SMALL_FILE_MAX_BYTES + 1))
        dirty.add("big.bin")
    result = await engine.sync_paths(dirty)
    assert result.transport == transport
    assert (remote / "a" / "b").is_dir()  # made there, its parent with it
    shutil.rmtree(root / "a")  # gone here before the batch that would name `a`
    await engine.sync_paths({"a"})
    await engine.full_sync()
    assert dirs_of(remote) == dirs_of(root)  # no orphan `a` there
    assert tree(remote) == tree(root)


async def test_a_folder_the_batch_filled_just_as_it_went_here_is_removed_next_batch(
    engine: SyncEngine, orch_home: Path
) -> None:
    """The tree changed while the batch was planned: `a/b` was walked (to make) and then `a`
    was gone (to remove). The remote `a` holds what the batch just made, so it stays; the
    next batch removes it without waiting for a full sync. A folder kept because it holds
    the machine's own files (a job's outputs) is not retried (no busy loop)."""
    root, remote = Path(engine.root), _remote(engine, orch_home)
    (remote / "out").mkdir()
    (remote / "out" / "result.txt").write_text("a job's output\n")
    engine.manifest.record_dirs(["out"], [])  # orch made `out`, a job wrote in it
    plan = Plan(mkdirs=["a/b"], rmdirs=["a", "out"])
    result = await engine._apply(plan, {}, {}, {}, {})
    assert (remote / "a" / "b").is_dir()
    assert result.retry == {"a"}
    await engine.sync_paths(result.retry)
    assert not (remote / "a").exists()
    assert dirs_of(remote) == dirs_of(root) | {"out"}
    assert (remote / "out" / "result.txt").exists()  # the machine's own: left alone


async def _helper_waiting_for_the_lock(sync_id: str) -> int:
    """The PID of this sync's helper once it waits for the remote lock (this machine's)."""
    tail = b"\0" + sync_id.encode() + b"\0"
    for _ in range(500):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                if cmd.endswith(tail) and "lock" in Path(f"/proc/{pid}/wchan").read_text():
                    return int(pid)
        await asyncio.sleep(0.02)
    raise AssertionError("the helper never waited for the lock")


async def test_a_batch_left_waiting_by_a_cut_session_is_never_applied_later(
    engine: SyncEngine, orch_home: Path
) -> None:
    """A batch was sent, then the session was cut (its connection half-open, as after a
    network drop: the machine does not know yet) while the machine's helper waited for the
    lock (held by a snapshot). The next session's helper ends that one, so the old batch is
    never applied after the next session's reconcile."""
    root, remote = Path(engine.root), _remote(engine, orch_home)
    with open(remote / ".orch" / "lock", "w") as snapshot:
        fcntl.flock(snapshot, fcntl.LOCK_EX)
        (root / "stale").mkdir()
        batch = asyncio.create_task(engine.sync_paths({"stale"}))
        old = await _helper_waiting_for_the_lock(engine.manifest.sync_id)
        batch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await batch
        cut, engine.helper = engine.helper, None  # nobody reads that session any more
        (root / "stale").rmdir()
        await engine.connect()  # the next session
    try:
        for _ in range(500):  # the lock is free: a helper left waiting would apply the
            # batch now, then wait for the next request on its input pipe
            if not _alive(old) or "pipe" in _wchan(old):
                break
            await asyncio.sleep(0.02)
        assert not (remote / "stale").exists()  # the old batch was not applied...
        assert not _alive(old)  # ...and never will be
        await engine.full_sync()
        assert dirs_of(remote) == dirs_of(root)
        assert tree(remote) == tree(root)
    finally:
        if cut is not None:
            cut.close()


def _wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""
