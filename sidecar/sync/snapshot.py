"""Job snapshots: a hard-linked copy of the synced tree on the remote, named by generation.

`prepare_snapshot(ctx)` makes (or reuses) `~/.orch/snapshots/<project>/<gen>` on
the remote, a copy of the remote project folder as of sync generation `<gen>`, and returns
its absolute path and the generation. A job started there never sees later syncs: orch
replaces files by rename, so the live tree gets new inodes and the snapshot keeps the old
ones. The copy waits for the sync lock, so it never holds half a batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from remote_config.sync import snapshot_command
from sidecar.errors import RemoteCommandFailed


class NotSynced(RemoteCommandFailed):
    """The remote project folder has no sync generation yet, so there is nothing to snapshot."""


if TYPE_CHECKING:
    from sidecar.context import MachineContext

SNAPSHOTS_DIR = "~/.orch/snapshots"


def snapshots_dir(project: str) -> str:
    return f"{SNAPSHOTS_DIR}/{project}"


async def prepare_snapshot(ctx: MachineContext) -> tuple[str, int]:
    """(absolute remote path, sync generation) of a snapshot of the synced tree."""
    cfg = ctx.config
    target = await ctx.target()
    command = snapshot_command(cfg.remote_dir, snapshots_dir(cfg.project_name))
    result = await ctx.pool.run(target, command, timeout=600)
    if result.exit_status == 3:
        raise NotSynced(
            f"{cfg.remote_dir} on the machine was never synced by orch, so it has no snapshot",
            hint="run `orch sync now` first, or start the job with --no-snapshot",
            exit_status=3,
        )
    if result.exit_status != 0:
        raise RemoteCommandFailed(
            f"could not snapshot {cfg.remote_dir} on the remote: {result.stderr.strip()[-400:]}",
            hint="is the project synced? run `orch sync now`; check free inodes (df -i)",
            exit_status=result.exit_status,
            stderr=result.stderr,
        )
    generation, path = result.stdout.strip().splitlines()[-1].split(" ", 1)
    return path, int(generation)
