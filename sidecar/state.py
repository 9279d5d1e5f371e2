"""orch's own state under `$ORCH_HOME` (default `~/.orch`).

Folders are created 0700 and secret files 0600; every write is atomic (temp file, fsync,
rename) so a crash never leaves a half-written state file behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any


def orch_home() -> Path:
    raw = os.environ.get("ORCH_HOME") or os.path.join(os.path.expanduser("~"), ".orch")
    return Path(raw).absolute()


def secure_dir(path: Path) -> Path:
    """Create `path` (and parents) 0700, tightening an existing folder's mode."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if info.st_uid != os.getuid() or not os.path.isdir(path) or os.path.islink(path):
        raise PermissionError(f"{path} is not a folder owned by this user; refusing to use it")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path


def atomic_write(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Write `data` to `path` so readers see the old or the new content, never a mix."""
    payload = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def clean_temp_files(folder: Path, prefix: str) -> list[Path]:
    """Remove temp files `<prefix><8 random chars>` (mkstemp's names) that a writer killed
    mid-write (kill -9) left behind. Call it only while holding the lock every writer of
    that folder's file takes, so no live writer's temp file is taken away."""
    removed: list[Path] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            rest = entry.name[len(prefix) :]
            if (
                entry.name.startswith(prefix)
                and len(rest) == 8
                and all(c.islower() or c.isdigit() or c == "_" for c in rest)
                and entry.is_file(follow_symlinks=False)
            ):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def write_json(path: Path, value: Any, mode: int = 0o600) -> None:
    atomic_write(path, json.dumps(value, indent=2, sort_keys=True) + "\n", mode)


def read_json(path: Path) -> Any | None:
    """The JSON in `path`, or None when it is missing or unreadable (a torn or foreign file)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError, OSError):
        return None


@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on `path` (created 0600); yields False if not blocking and busy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def async_file_lock(path: Path) -> AsyncIterator[None]:
    """`file_lock` for coroutines: waits for the flock in a thread, never on the event loop."""
    import asyncio

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_locked(path: Path) -> bool:
    """Whether some process holds an exclusive flock on `path` right now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


async def serve_as_owner(
    lock: Path, socket: Path, handler: Any
) -> tuple[int, asyncio.AbstractServer] | None:
    """Take `lock` without waiting and serve `handler` on the Unix socket `socket` (0600),
    replacing a dead owner's socket; None when another process holds the lock. The returned
    fd holds the lock until closed."""
    secure_dir(lock.parent)
    secure_dir(socket.parent)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    with contextlib.suppress(FileNotFoundError):
        socket.unlink()  # a dead owner's socket: we hold the lock now
    server = await asyncio.start_unix_server(handler, path=str(socket))
    os.chmod(socket, 0o600)
    return fd, server


async def stop_serving(server: asyncio.AbstractServer, socket: Path | None = None) -> None:
    """Stop a server (an owner's Unix socket, a forward's TCP listener) without stranding a
    client that is connecting just now.

    Python 3.11's `Server.close()` may land between the loop accepting a connection and
    setting up its transport; that setup then fails (an assert in `Server._attach`, silent
    outside debug mode) and leaks the accepted socket, so its client waits for an answer
    that never comes until the garbage collector happens to close it. So: unlink the path
    first (a new client gets "not answering" at once and knows the owner is going), let the
    loop accept and set up what already connected (three turns: poll and accept, set up the
    transport, start the handler; each such client gets its answer, "stopping"), then
    close the listening socket. (A TCP listener has no path to take away first.)"""
    if socket is not None:
        with contextlib.suppress(FileNotFoundError):
            socket.unlink()
    for _ in range(3):
        await asyncio.sleep(0)
    server.close()


def pid_alive(pid: int) -> bool:
    """True for a live process; False for a missing one or a zombie awaiting its reaper."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # Field 3 (after the parenthesised command name) is the state; Z = zombie, X = dead.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in {"Z", "X"}


async def wait_gone(pid: int, timeout: float) -> bool:
    """Wait (without blocking the loop) until `pid` has exited; False if it outlived `timeout`."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        await asyncio.sleep(0.02)
    return not pid_alive(pid)
