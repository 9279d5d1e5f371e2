"""The write-ahead record of folders: every folder a batch may create on the machine is
recorded before the batch is sent, so a folder gone here later is removed there (issue 12,
item 4: no orphan after a cut, a race or a lost event).

These drive the real sync engine against the embedded local machine (real OpenSSH rsync and
the helper over SSH) with crafted batches of dirty paths, which is how the races of the
chaos test (`test_sync_chaos.py`) reach the engine: a batch may name a new folder only by a
deeper path (its parent's event went to another batch), and the folder may be gone by the
time the next batch looks.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remote_config.sync import SMALL_FILE_MAX_BYTES, Plan
from sidecar.sync.engine import SyncEngine
from sidecar.sync.manifest import Manifest
from sidecar.sync.service import state_dir
from tests.integration.test_sync import dirs_of, tree

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
