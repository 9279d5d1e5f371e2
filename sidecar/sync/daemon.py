"""The background sync process: `python -m sidecar.sync.daemon --project DIR --machine NAME`.

With `--detach` it forks a session leader (re-parented to init, output to `sync.log`) and
reports to the launcher through a pipe: `progress N` lines during the initial sync, then
`ok` once it is watching, or `error: ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path


def _detach(log_file: Path) -> int:
    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            for line in pipe:
                print(line.strip(), flush=True)
                if line.startswith(("ok", "error")):
                    return 0 if line.startswith("ok") else 1
        print("error: the sync process exited before it was ready", flush=True)
        return 1
    os.close(read_fd)
    os.setsid()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null_fd)
    os.close(log_fd)
    return write_fd


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
    notify_fd: int | None = None
    if args.detach:
        result = _detach(folder / "sync.log")
        if result in (0, 1):
            return result
        notify_fd = result
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)

    def notify(message: str) -> None:
        nonlocal notify_fd
        if notify_fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(notify_fd, (message + "\n").encode())
        if message.startswith(("ok", "error")):
            with contextlib.suppress(OSError):
                os.close(notify_fd)
            notify_fd = None

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
