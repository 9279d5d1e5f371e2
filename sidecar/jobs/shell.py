"""A persistent `sh` on the remote for frequent, read-only job queries (`orch status`).

Opening an SSH channel starts a session on the server (sshd forks, the login shell starts,
then `sh` parses the job library) before any work is done; for the status of every job,
asked again and again by the sidecar and the extension, that set-up costs more than the work.
So one `sh -s` per connection is kept open with the library's functions defined once, and
each query is sent as one line: a subshell (so nothing leaks between queries, and nothing can
read the query stream: stdin is /dev/null) followed by an end marker carrying a random nonce
and the exit status. A dead shell or dropped connection is reopened once, transparently.
Long or mutating operations (run, stop) keep using a channel each.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import TYPE_CHECKING, Any

from sidecar.errors import ConnectTimeout, Unreachable
from sidecar.machines.base import SSHTarget

if TYPE_CHECKING:
    from sidecar.ssh.pool import ConnectionPool


class PersistentShell:
    def __init__(self, pool: ConnectionPool, prelude: str) -> None:
        self.pool = pool
        self.prelude = prelude  # function definitions, sent once per shell
        self._proc: Any = None
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def run(self, target: SSHTarget, body: str, timeout: float = 30.0) -> tuple[int, str]:
        """Run `body` (sh, one or more lines) in a subshell; return (exit status, output)."""
        import asyncssh

        async with self._lock:
            for attempt in (1, 2):
                try:
                    proc = await self._ensure(target)
                    nonce = secrets.token_hex(8)
                    marker = f"@@orch-done {nonce} "
                    proc.stdin.write(f'(\n{body}\n) < /dev/null 2>&1; echo "{marker}$?"\n')
                    out = await asyncio.wait_for(proc.stdout.readuntil(marker), timeout)
                    status = await asyncio.wait_for(proc.stdout.readline(), timeout)
                    return int(status.strip() or 255), out[: -len(marker)]
                except TimeoutError:
                    self._reset()
                    raise ConnectTimeout(f"a job query on {target.alias} timed out") from None
                except asyncio.CancelledError:  # given up mid-query: its output would linger
                    self._reset()
                    raise
                except (asyncssh.Error, OSError, asyncio.IncompleteReadError, ValueError):
                    self._reset()
                    self.pool.drop(target.alias)
                    if attempt == 2:
                        raise Unreachable(f"the connection to {target.alias} dropped") from None
        raise AssertionError("not reached")

    async def _ensure(self, target: SSHTarget) -> Any:
        conn = await self.pool.connection(target)
        if self._proc is not None and conn is self._conn and self._proc.exit_status is None:
            return self._proc
        self._reset()
        proc = await conn.create_process("sh -s", encoding="utf-8", errors="replace")
        proc.stdin.write(self.prelude + "\n")
        self._proc, self._conn = proc, conn
        return proc

    def close(self) -> None:
        """End the shell (the next query opens a new one)."""
        self._reset()

    def _reset(self) -> None:
        proc, self._proc, self._conn = self._proc, None, None
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.close()


class OpenSSHShell:
    """The same queries through OpenSSH's multiplexed master, for one-shot processes.

    A fresh `orch status` would otherwise pay for importing asyncssh and a Python key
    exchange before its first query; `ssh` through the managed config's ControlMaster (kept
    for ControlPersist after any earlier orch command) answers in a few milliseconds, and
    the first call leaves a master behind for the next ones.
    """

    def __init__(self, argv_for: Any, prelude: str) -> None:
        self.argv_for = argv_for  # async (command words) -> ssh argv
        self.prelude = prelude

    def close(self) -> None:
        """Nothing stays open between queries (the master is OpenSSH's)."""

    async def run(self, target: SSHTarget, body: str, timeout: float = 30.0) -> tuple[int, str]:
        argv = await self.argv_for(["sh", "-s"])
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        script = f"{self.prelude}\n(\n{body}\n) < /dev/null 2>&1\n"
        try:
            out, err = await asyncio.wait_for(proc.communicate(script.encode()), timeout)
        except TimeoutError:
            proc.kill()
            raise ConnectTimeout(f"a job query on {target.alias} timed out") from None
        except asyncio.CancelledError:
            proc.kill()
            raise
        if proc.returncode == 255:
            raise Unreachable(
                f"ssh to {target.alias} failed: {err.decode(errors='replace').strip()[-300:]}"
            )
        return int(proc.returncode or 0), out.decode(errors="replace")
