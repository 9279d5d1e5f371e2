"""The background sync process: `python -m sidecar.sync.daemon --project DIR --machine NAME`.

With `--detach` it forks a session leader (re-parented to init, output to `sync.log`) and
reports to the launcher through a pipe: `progress N` lines during the initial sync, then
`ok` once it is watching, or `error: ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from sidecar import daemon


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orch-sync")
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("--machine", required=True)
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args(argv)

    from sidecar.context import open_context
    from sidecar.sync.service import Owner, claim, release, state_dir

    ctx = open_context(args.project, args.machine)
    folder = state_dir(ctx)
    ready = daemon.start(folder / "sync.log", "the sync process", background=args.detach)
    if isinstance(ready, int):
        return ready  # the launcher's side
    notify = ready.say

    async def go() -> None:
        fd = claim(folder)
        try:
            owner = Owner(ctx, foreground=False, progress=lambda pct: notify(f"progress {pct}"))
            owner.install_signals()
            await owner.run(ready=lambda status: notify("ok"))
        finally:
            release(fd)
            await ctx.close()

    try:
        asyncio.run(go())
    except Exception as exc:
        logging.getLogger("orch.sync").exception("sync failed")
        notify(f"error: {getattr(exc, 'message', None) or exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
