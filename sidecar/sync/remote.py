"""The remote side of sync: the helper process on the pooled connection, and rsync.

`RemoteHelper` runs `HELPER_SOURCE` (python3, stdlib only) as one long-lived process on the
pooled asyncssh connection and sends it whole batches: one round trip applies every put,
delete, rename and mkdir of a batch, each file written to a temp name and renamed, with the
conflict check against the manifest in the same request. `run_rsync` drives rsync
(`--files-from`; a root transfer for a first copy) through the managed OpenSSH config
(ControlMaster) for large batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import struct
import sys
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from remote_config.rsync_cmd import (
    parse_rsync_dir,
    parse_rsync_progress,
    parse_rsync_sent,
    rsync_argv,
)
from remote_config.sync import helper_command
from sidecar.errors import OrchError, Unreachable

if TYPE_CHECKING:
    import asyncssh


class HelperGone(Unreachable):
    """The helper process or its connection ended (the sync pauses and reconnects)."""


class RemoteHelper:
    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self.process = process
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, conn: asyncssh.SSHClientConnection, sync_id: str = "") -> RemoteHelper:
        """Start the helper; with `sync_id`, it first ends older helpers of the same sync
        (left over from a killed sync or a dropped connection: no stale batch after this)."""
        import asyncssh

        try:
            process = await conn.create_process(helper_command(sync_id=sync_id), encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise HelperGone(f"cannot start the sync helper: {exc}") from exc
        helper = cls(process)
        try:  # asyncio.timeout, not wait_for: 3.11's can swallow a racing cancellation (and
            # this runs in the sync's reconnect loop)
            async with asyncio.timeout(20):
                hello = await helper._read()
        except (HelperGone, TimeoutError) as exc:
            stderr = b""
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    stderr = await process.stderr.read(4000)
            text = stderr.decode(errors="replace").strip()
            if "not found" in text:
                raise OrchError(
                    "orch sync needs python3 on the remote machine",
                    hint="install python3 there (e.g. apt-get install python3)",
                ) from exc
            raise HelperGone(f"the sync helper did not start: {text or exc}") from exc
        if hello.get("hello") != 1:
            raise OrchError(f"unexpected greeting from the sync helper: {hello!r}")
        return helper

    async def request(
        self, request: dict[str, Any], payloads: list[bytes] | None = None
    ) -> list[dict[str, Any]]:
        """Send one batch (puts' contents in `payloads`, in op order); return per-op results."""
        import asyncssh

        header = json.dumps(request).encode()
        async with self._lock:
            try:
                self.process.stdin.write(struct.pack(">I", len(header)) + header)
                for payload in payloads or ():
                    self.process.stdin.write(payload)
                await self.process.stdin.drain()
                reply = await self._read()
            except (asyncssh.Error, OSError, asyncio.IncompleteReadError) as exc:
                raise HelperGone(f"the sync connection dropped: {exc}") from exc
        results: list[dict[str, Any]] = reply["results"]
        return results

    async def _read(self) -> dict[str, Any]:
        try:
            size = struct.unpack(">I", await self.process.stdout.readexactly(4))[0]
            value: dict[str, Any] = json.loads(await self.process.stdout.readexactly(size))
        except asyncio.IncompleteReadError as exc:
            raise HelperGone("the sync helper exited") from exc
        return value

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.process.stdin.write_eof()
        with contextlib.suppress(Exception):
            self.process.close()


async def run_rsync(
    ssh_config: str,
    alias: str,
    local_dir: str,
    remote_dir: str,
    paths: list[str],
    progress: Callable[[int], None] | None = None,
    on_sent: Callable[[list[tuple[str, str]]], None] | None = None,
    *,
    excludes: list[str] | None = None,
    on_dirs: Callable[[list[str]], None] | None = None,
) -> dict[str, str]:
    """Copy exactly `paths` (files and folders) with rsync through ControlMaster; with
    `excludes` (rsync filter rules) the whole tree less what they leave out, `paths` unused.

    Returns path -> md5 of the content rsync sent, for each regular file it transferred;
    `on_sent([(path, md5), ...])` hears of them as rsync reports them (it has read them), and
    `on_dirs` of the folders it reports.
    """
    root = excludes is not None
    fd, list_file = tempfile.mkstemp(prefix="orch-sync-", suffix=".rules" if root else ".list")
    try:
        with os.fdopen(fd, "wb") as handle:
            items = excludes if excludes is not None else paths
            handle.write(b"".join(p.encode(errors="surrogateescape") + b"\0" for p in items))
        argv = rsync_argv(
            ssh_config,
            alias,
            local_dir,
            remote_dir,
            None if root else list_file,
            exclude_from=list_file if root else None,
            progress=progress is not None,
        )
        proc = await asyncio.create_subprocess_exec(
            *_dies_with_us(argv),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        errors = asyncio.create_task(proc.stderr.read())
        try:
            sent = await _pump_output(proc.stdout, progress, on_sent, on_dirs)
            code = await proc.wait()
        except BaseException:  # cancelled (the sync stopping): no rsync writing on behind it
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            errors.cancel()
            raise
        stderr = (await errors).decode(errors="replace")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(list_file)
    # 24: some files vanished while rsync ran; 23 when every error is a listed file that was
    # gone before rsync opened it (an editor's temp file renamed over its target). Neither is
    # a failure: the caller re-plans what was not sent from the tree as it is now.
    if code in (0, 24) or (code == 23 and only_vanished(stderr)):
        return sent
    if code == 255 or "connection" in stderr.lower():
        raise HelperGone(f"rsync lost the connection: {stderr.strip()[-300:]}")
    raise OrchError(
        f"rsync failed with exit status {code}: {stderr.strip()[-500:]}",
        hint="check free space and permissions in the remote folder",
    )


def _dies_with_us(argv: list[str]) -> list[str]:
    """rsync ended by the kernel if this process dies (SIGKILL included; Linux `setpriv`).

    An rsync left running by a killed sync would go on writing on the machine, through the
    ControlMaster, while the next sync (which no longer holds it under the remote lock) makes
    its own changes there: a folder it removed made again, a file it wrote replaced.
    """
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else argv


_GATHER_S = 0.005

_VANISHED = ("No such file or directory (2)", "file has vanished", "some files vanished")


def only_vanished(stderr: str) -> bool:
    """Whether rsync's errors are all about source files that no longer exist."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if not line.startswith("rsync error: some files")]
    return bool(errors) and all(any(mark in line for mark in _VANISHED) for line in errors)


async def _pump_output(
    stream: asyncio.StreamReader,
    progress: Callable[[int], None] | None,
    on_sent: Callable[[list[tuple[str, str]]], None] | None = None,
    on_dirs: Callable[[list[str]], None] | None = None,
) -> dict[str, str]:
    sent: dict[str, str] = {}
    buffer = b""
    while chunk := await stream.read(65536):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        items = []
        dirs = []
        for raw in lines:
            for line in raw.decode(errors="surrogateescape").split("\r"):
                item = parse_rsync_sent(line)
                if item is not None:
                    items.append(item)
                elif on_dirs is not None and (folder := parse_rsync_dir(line)) is not None:
                    dirs.append(folder)
                elif progress is not None and (pct := parse_rsync_progress(line)) is not None:
                    progress(pct)
        sent.update(items)
        if on_sent is not None and items:
            on_sent(items)
        if on_dirs is not None and dirs:
            on_dirs(dirs)
        # rsync writes a line per file: let them gather (20,000 files are not 20,000 wake-ups
        # of this loop, competing with rsync for the CPU).
        await asyncio.sleep(_GATHER_S)
    return sent
