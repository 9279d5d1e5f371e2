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

from sidecar.daemon import Readiness, detach


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orch-sync")
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("--machine", required=True)
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args(argv)

    from sidecar.app import Orchestrator
    from sidecar.sync.service import Owner, claim, release, state_dir

    orch = Orchestrator(cwd=args.project)
    folder = state_dir(orch, args.machine)
    ready: Readiness | None = None
    if args.detach:
        detached = detach(folder / "sync.log", "the sync process")
        if isinstance(detached, int):
            return detached  # the launcher's side
        ready = detached
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)

    def notify(message: str) -> None:
        if ready is not None:
            ready.say(message)

    async def go() -> None:
        fd = claim(folder)
        try:
            owner = Owner(
                orch, args.machine, foreground=False, progress=lambda pct: notify(f"progress {pct}")
            )
            owner.install_signals()
            await owner.run(ready=lambda status: notify("ok"))
        finally:
            release(fd)
            await orch.close()

    try:
        asyncio.run(go())
    except Exception as exc:
        logging.getLogger("orch.sync").exception("sync failed")
        notify(f"error: {getattr(exc, 'message', None) or exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
