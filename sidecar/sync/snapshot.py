"""Job snapshots: a hard-linked copy of the synced tree on the remote, named by sync token.

`prepare_snapshot(ctx)` makes (or reuses) `~/.orch/snapshots/<project>/<token>`
on the remote, a copy of the remote project folder as this laptop's sync last wrote it,
and returns its absolute path and the generation. The token (`<sync id>-<generation>`,
see `remote_config.sync.snapshot_command`) is checked on the remote under the sync lock:
a folder synced by another laptop, another project folder of the same name, an earlier
(lost) sync state or a batch cut in half has another token, and no snapshot is made from
it. A job started there never sees later syncs: orch replaces files by rename, so the live
tree gets new inodes and the snapshot keeps the old ones.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import TYPE_CHECKING

from remote_config.sync import snapshot_command
from sidecar.errors import RemoteCommandFailed


class NotSynced(RemoteCommandFailed):
    """The remote project folder has no sync generation yet, so there is nothing to snapshot."""


class StaleTree(RemoteCommandFailed):
    """The remote folder does not hold the tree this laptop's sync last wrote."""


if TYPE_CHECKING:
    from sidecar.context import MachineContext

SNAPSHOTS_DIR = "~/.orch/snapshots"
ATTEMPTS = 20  # the remote may be one batch ahead of the laptop's record for a moment


def snapshots_dir(project: str) -> str:
    return f"{SNAPSHOTS_DIR}/{project}"


def synced_token(ctx: MachineContext) -> str | None:
    """The token of the last generation this laptop's sync wrote (None: never synced)."""
    from sidecar.sync.service import state_dir

    db = state_dir(ctx) / "manifest.db"
    if not db.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    if "sync_id" not in rows or int(rows.get("generation", "0") or 0) < 1:
        return None
    return f"{rows['sync_id']}-{rows['generation']}"


async def prepare_snapshot(ctx: MachineContext) -> tuple[str, int]:
    """(absolute remote path, sync generation) of a snapshot of the synced tree."""
    cfg = ctx.config
    target = await ctx.target()
    for attempt in range(ATTEMPTS):
        expect = synced_token(ctx)
        command = snapshot_command(cfg.remote_dir, snapshots_dir(cfg.project_name), expect)
        result = await ctx.pool.run(target, command, timeout=600)
        if result.exit_status != 4 or (expect is None and result.exit_status == 4):
            break
        await asyncio.sleep(0.1 * (attempt + 1))  # a batch in flight: its record comes next
    if result.exit_status == 3:
        raise NotSynced(
            f"{cfg.remote_dir} on the machine was never synced by orch, so it has no snapshot",
            hint="run `orch sync now` first, or start the job with --live",
            exit_status=3,
        )
    if result.exit_status == 4:
        found = result.stderr.strip().splitlines()[-1:] or ["?"]
        why = (
            "this computer has no record of syncing it"
            if expect is None
            else f"this computer's sync wrote {expect}"
        )
        raise StaleTree(
            f"{cfg.remote_dir} on the machine holds another tree (sync token {found[0]}) than "
            f"the one this computer synced ({why}); a job started there could run stale or "
            "another project's code",
            hint="run `orch sync now` to make the machine match this folder, then run again "
            "(or start the job with --live to use the folder as it is)",
            exit_status=4,
        )
    if result.exit_status != 0:
        raise RemoteCommandFailed(
            f"could not snapshot {cfg.remote_dir} on the remote: {result.stderr.strip()[-400:]}",
            hint="is the project synced? run `orch sync now`; check free inodes (df -i)",
            exit_status=result.exit_status,
            stderr=result.stderr,
        )
    token, path = result.stdout.strip().splitlines()[-1].split(" ", 1)
    return path, int(token.rsplit("-", 1)[-1])
