"""Detaching orch's background processes (local machine server, port forwarder, sync watcher).

`detach(log)` forks: the child becomes a session leader with stdin on /dev/null and stdout/
stderr appended to `log`, and gets a `Readiness` pipe back; the parent relays what the child
reports, line by line, to its own stdout (or stderr: `report_to="stderr"`, for a launcher
whose stdout is someone's data) until a final line (`ok…`, `busy…` or `error…`), and returns
the exit code the launcher (`orch`, the sidecar) should see. The launcher waits only for this
short-lived parent, so the daemon is re-parented to init and never becomes a
zombie of a long-lived sidecar.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FINAL = ("ok", "busy", "error")


class Readiness:
    """The daemon's end of the launcher's pipe."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd  # None: running in the foreground, nobody waits for a report

    def say(self, message: str) -> None:
        """Report a line; a final one (`ok…`, `busy…`, `error…`) also closes the pipe."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._fd, (message + "\n").encode())
        if message.startswith(FINAL):
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def detach(log: Path, what: str, report_to: str = "stdout") -> Readiness | int:
    """In the daemon: a Readiness; in the launcher's process: its exit code (0 = ok), the
    daemon's report printed on `report_to` ("stdout" or "stderr")."""
    import sys

    read_fd, write_fd = os.pipe()
    if os.fork() > 0:
        os.close(write_fd)
        out = sys.stderr if report_to == "stderr" else sys.stdout
        with os.fdopen(read_fd) as pipe:
            for line in pipe:
                print(line.strip(), file=out, flush=True)
                if line.startswith(FINAL):
                    return 0 if line.startswith(("ok", "busy")) else 1
        print(f"error: {what} exited before it was ready (see {log})", file=out, flush=True)
        return 1
    os.close(read_fd)
    os.setsid()
    log.parent.mkdir(parents=True, exist_ok=True)
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((null_fd, 0), (log_fd, 1), (log_fd, 2)):
        os.dup2(fd, target)
    os.close(null_fd)
    os.close(log_fd)
    return Readiness(write_fd)


def start(log: Path, what: str, *, background: bool, report_to: str = "stdout") -> Readiness | int:
    """The common start of a daemon's `main()`: detach when `background` (returning the
    launcher's exit code in the launcher), then log to stderr (the log file once detached)."""
    import logging
    import sys

    ready = detach(log, what, report_to) if background else Readiness(None)
    if isinstance(ready, int):
        return ready
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    return ready


async def terminate(pid: int, timeout: float = 5.0) -> bool:
    """Stop one of orch's background processes: SIGTERM (it cleans up and exits), then
    SIGKILL if it is still there after `timeout`. True when it is gone."""
    import signal

    from sidecar.state import wait_gone

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if await wait_gone(pid, timeout):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return await wait_gone(pid, timeout)
