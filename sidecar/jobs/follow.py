"""Streaming a job's log (`orch logs NAME [--follow]`) over the pooled connection.

The remote side (`job_scripts.logs_script`) prints `orch-offset N` and then the log from
byte N; in follow mode it keeps printing new bytes (tail -f) and exits 0 when the job has
ended. Here the bytes are counted, so that after a dropped connection the stream resumes at
the exact byte it had reached, and after the job ends one last read picks up whatever tail
had not printed yet: every byte is yielded once. Reconnects back off (bounded) and give up
after `reconnect_timeout_s`; a changed host key or refused login is never retried.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from remote_config import job_scripts as scripts
from sidecar.errors import AuthenticationFailed, ConnectionFailed, HostKeyMismatch, Unreachable
from sidecar.ssh.pool import RunResult

if TYPE_CHECKING:
    from sidecar.context import MachineContext

BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
CHUNK = 65536


class LogText(str):
    """A chunk of a job's log that knows the byte of run.log just after it: where a new
    stream resumes without repeating or skipping a byte (`LogStream(offset=…)`)."""

    offset: int | None = None


def _text(text: str, offset: int | None) -> LogText:
    chunk = LogText(text)
    chunk.offset = offset
    return chunk


class _Dropped(Exception):
    """The connection went away mid-stream: reconnect and resume."""


class LogStream:
    reconnect_timeout_s = 300.0

    def __init__(
        self, ctx: MachineContext, name: str, workdir: str, offset: int | None = None
    ) -> None:
        self.ctx = ctx
        self.machine = ctx.machine
        self.name = name
        self.workdir = workdir
        self.offset: int | None = offset  # the next byte of run.log to read (None: tail's)
        self.connected = False  # a first connection worked: later failures are drops
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    async def chunks(self, tail: int | None, follow: bool) -> AsyncIterator[str]:
        failures: list[float] = []
        while True:
            script = scripts.logs_script(
                self.name,
                self.workdir,
                self.offset or 0,
                tail if self.offset is None else None,
                follow,
            )
            try:
                async for text in self._one_pass(script):
                    failures.clear()
                    yield text
            except _Dropped:
                await self._backoff(failures)
                continue
            if not follow:
                tail_text = self._decoder.decode(b"", final=True)
                if tail_text:
                    yield _text(tail_text, self.offset)
                return
            follow = False  # the job ended: one last plain read from our offset

    async def _one_pass(self, script: str) -> AsyncIterator[str]:
        import asyncssh

        target = await self.ctx.target()
        try:
            conn = await self.ctx.pool.connection(target)
            proc: Any = await conn.create_process("sh -s", encoding=None)
        except (HostKeyMismatch, AuthenticationFailed):
            raise
        except ConnectionFailed:
            if not self.connected:  # never reached: say so now, do not retry for minutes
                raise
            self.ctx.pool.drop(target.alias)
            raise _Dropped from None
        except (asyncssh.Error, OSError) as exc:
            self.ctx.pool.drop(target.alias)
            raise _Dropped from exc
        self.connected = True
        errors = bytearray()
        drain = asyncio.create_task(_keep_tail(proc.stderr, errors))
        try:
            proc.stdin.write(script.encode())
            proc.stdin.write_eof()
            header = await proc.stdout.readline()
            if header.startswith(b"orch-offset "):
                if self.offset is None:
                    self.offset = int(header.split()[1])
                while chunk := await proc.stdout.read(CHUNK):
                    self.offset = (self.offset or 0) + len(chunk)
                    text = self._decoder.decode(chunk)
                    if text:  # bytes of a character cut in half wait in the decoder
                        yield _text(text, self.offset - len(self._decoder.getstate()[0]))
            status = (await proc.wait()).exit_status
        except (asyncssh.Error, OSError) as exc:
            self.ctx.pool.drop(target.alias)
            raise _Dropped from exc
        finally:
            proc.close()
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await drain
        if status is None:
            self.ctx.pool.drop(target.alias)
            raise _Dropped
        if status != 0:
            from sidecar.jobs.tmux import remote_error

            stderr = bytes(errors).decode("utf-8", "replace").lstrip(".")
            raise remote_error(RunResult(status, "", stderr, 0.0), self.name, self.machine)

    async def _backoff(self, failures: list[float]) -> None:
        now = time.monotonic()
        failures.append(now)
        if now - failures[0] > self.reconnect_timeout_s:
            raise Unreachable(
                f"lost the connection to {self.machine!r} while following job {self.name}",
                hint=f"the job keeps running; follow it again with: orch logs {self.name} -f",
            )
        await asyncio.sleep(BACKOFF_S[min(len(failures), len(BACKOFF_S)) - 1])


async def _keep_tail(stream: Any, sink: bytearray, keep: int = 4000) -> None:
    """Read stderr as it comes (an unread stream would stall the channel), keep its end."""
    while data := await stream.read(CHUNK):
        sink += data
        del sink[:-keep]
