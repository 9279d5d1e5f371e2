"""The embedded SSH server behind the `local` machine (runs as its own background process).

It serves the real OpenSSH tools on 127.0.0.1: exec requests (so rsync and tmux work through
it), interactive shells on a PTY (so `tmux attach` works), SFTP, and loopback-only TCP
forwarding. Authentication is key-only with orch's generated client key; commands run as the
current user with HOME set to the machine's "remote home" folder. The process holds an
exclusive flock on `server.lock` for its whole life, which is how others tell it is alive.

Run: `python -m sidecar.machines.local.server --root DIR --port N`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import getpass
import json
import logging
import os
import pwd
import signal
import struct
import sys
import termios
import time
from pathlib import Path
from typing import Any

import asyncssh

from sidecar import daemon

log = logging.getLogger("orch.local")

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_CHUNK = 65536


class LocalSSHServer(asyncssh.SSHServer):
    """Key-only auth for the one local user; TCP forwarding only to and from loopback."""

    def __init__(self, user: str) -> None:
        self._user = user
        self._user_ok = False

    def begin_auth(self, username: str) -> bool:
        self._user_ok = username == self._user
        if not self._user_ok:
            log.warning("refused login as %r (only %r may log in)", username, self._user)
        return True

    def public_key_auth_supported(self) -> bool:
        return self._user_ok

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        return dest_host in _LOOPBACK

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return listen_host in _LOOPBACK


class HomeSFTPServer(asyncssh.SFTPServer):
    """SFTP rooted at the process cwd (the remote home); ends with exit status 0.

    asyncssh closes SFTP channels without an exit status, which makes OpenSSH's `sftp`
    return 255 and OpenSSH 9's scp fail, so the status is sent explicitly.
    """

    def exit(self) -> None:
        with contextlib.suppress(Exception):
            self.channel.exit(0)


class Session:
    """One exec/shell request: runs the command and pumps bytes both ways."""

    def __init__(self, process: asyncssh.SSHServerProcess[bytes], home: Path, shell: str) -> None:
        self.process = process
        self.home = home
        self.shell = shell

    def environment(self) -> dict[str, str]:
        user = getpass.getuser()
        env = {
            "HOME": str(self.home),
            "USER": user,
            "LOGNAME": user,
            "SHELL": self.shell,
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
        peer = self.process.get_extra_info("peername") or ("127.0.0.1", 0)
        sock = self.process.get_extra_info("sockname") or ("127.0.0.1", 0)
        env["SSH_CONNECTION"] = f"{peer[0]} {peer[1]} {sock[0]} {sock[1]}"
        for key, value in (self.process.env or {}).items():
            name = key.decode() if isinstance(key, bytes) else str(key)
            env[name] = value.decode() if isinstance(value, bytes) else str(value)
        term = self.process.term_type
        if term:
            env["TERM"] = term
        return env

    def argv(self) -> list[str]:
        command = self.process.command
        if command is None:
            return [self.shell, "-l"]
        return [self.shell, "-c", command]

    async def run(self) -> None:
        try:
            if self.process.term_type:
                code = await self._run_pty()
            else:
                code = await self._run_pipes()
        except Exception as exc:  # report, never crash the server
            log.exception("session failed")
            with contextlib.suppress(Exception):
                self.process.stderr.write(f"orch local machine: {exc}\n".encode())
            code = 255
        self._exit(code)

    def _exit(self, code: int) -> None:
        if code < 0:
            name = signal.Signals(-code).name.removeprefix("SIG")
            self.process.exit_with_signal(name)
        else:
            self.process.exit(code)

    async def _run_pipes(self) -> int:
        child = await asyncio.create_subprocess_exec(
            *self.argv(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.environment(),
            cwd=self.home,
            start_new_session=True,
        )
        assert child.stdin and child.stdout and child.stderr
        feeder = asyncio.create_task(self._feed(child))
        outputs: asyncio.Future[Any] = asyncio.gather(
            self._drain(child.stdout, self.process.stdout),
            self._drain(child.stderr, self.process.stderr),
        )
        closed = asyncio.create_task(self.process.channel.wait_closed())
        done, _ = await asyncio.wait({outputs, closed}, return_when=asyncio.FIRST_COMPLETED)
        if closed in done:  # the client went away: hang up the command's process group
            _signal_group(child.pid, signal.SIGHUP)
        code = await child.wait()
        with contextlib.suppress(Exception):
            await outputs
        feeder.cancel()
        closed.cancel()
        return code

    async def _feed(self, child: asyncio.subprocess.Process) -> None:
        assert child.stdin
        try:
            while True:
                try:
                    data = await self.process.stdin.read(_CHUNK)
                except asyncssh.SignalReceived as sig:
                    _signal_group(child.pid, getattr(signal, "SIG" + sig.signal, signal.SIGTERM))
                    continue
                except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged):
                    continue
                if not data:
                    break
                child.stdin.write(data)
                await child.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, asyncssh.Error):
            pass
        finally:
            with contextlib.suppress(Exception):
                child.stdin.close()

    @staticmethod
    async def _drain(source: asyncio.StreamReader, sink: Any) -> None:
        while True:
            data = await source.read(_CHUNK)
            if not data:
                return
            try:
                sink.write(data)
                await sink.drain()
            except (asyncssh.Error, BrokenPipeError, ConnectionError):
                return  # the client is gone; keep reading so the child never blocks

    async def _run_pty(self) -> int:
        master, slave = os.openpty()
        cols, rows, _, _ = self.process.term_size
        _set_winsize(slave, rows or 24, cols or 80)
        child = await asyncio.create_subprocess_exec(
            *self.argv(),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=self.environment(),
            cwd=self.home,
            start_new_session=True,
            preexec_fn=_take_controlling_tty,
        )
        os.close(slave)
        loop = asyncio.get_running_loop()
        output_done = loop.create_future()

        def readable() -> None:
            try:
                data = os.read(master, _CHUNK)
            except OSError:  # EIO: every slave descriptor is closed
                data = b""
            if data:
                with contextlib.suppress(Exception):
                    self.process.stdout.write(data)
                return
            loop.remove_reader(master)
            if not output_done.done():
                output_done.set_result(None)

        loop.add_reader(master, readable)
        feeder = asyncio.create_task(self._feed_pty(master, child.pid))
        code = await child.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(output_done, timeout=1.0)
        loop.remove_reader(master)
        feeder.cancel()
        os.close(master)
        return code

    async def _feed_pty(self, master: int, pid: int) -> None:
        while True:
            try:
                data = await self.process.stdin.read(_CHUNK)
            except asyncssh.TerminalSizeChanged as change:
                _set_winsize(master, change.height, change.width)
                continue
            except asyncssh.SignalReceived as sig:
                _signal_group(pid, getattr(signal, "SIG" + sig.signal, signal.SIGTERM))
                continue
            except asyncssh.BreakReceived:
                continue
            except asyncssh.Error:
                return
            if not data:
                return
            with contextlib.suppress(OSError):
                os.write(master, data)


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def serve(root: Path, port: int, ready: Any = None) -> None:
    home = root / "home"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chdir(home)  # SFTP resolves relative paths against the cwd: make it the remote home
    shell = pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"

    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        await Session(process, home, shell).run()

    user = getpass.getuser()
    server = await asyncssh.listen(
        "127.0.0.1",
        port,
        server_factory=lambda: LocalSSHServer(user),
        server_host_keys=[str(root / "host_ed25519_key")],
        authorized_client_keys=str(root / "authorized_keys"),
        process_factory=handle,
        sftp_factory=HomeSFTPServer,
        allow_scp=True,
        encoding=None,
        line_editor=False,
        agent_forwarding=False,
        x11_forwarding=False,
        keepalive_interval=30,
        keepalive_count_max=4,
    )
    bound = server.sockets[0].getsockname()[1]
    state = {"pid": os.getpid(), "port": bound, "started_at": time.time(), "host": "127.0.0.1"}
    _write_state(root / "state.json", state)
    log.info("listening on 127.0.0.1:%d (pid %d)", bound, os.getpid())
    if ready is not None:
        ready(bound)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    server.close()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(server.wait_closed(), timeout=2)
    with contextlib.suppress(FileNotFoundError):
        (root / "state.json").unlink()


def _write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orch-local-machine")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--detach", action="store_true", help="daemonize; print 'ok PORT' when ready"
    )
    args = parser.parse_args(argv)
    root: Path = args.root.absolute()
    ready = daemon.start(root / "server.log", "the local machine server", background=args.detach)
    if isinstance(ready, int):
        return ready  # the launcher's side
    notify = ready.say

    lock_fd = os.open(root / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        notify("error: another local machine server is already running (server.lock is held)")
        return 3
    try:
        asyncio.run(serve(root, args.port, ready=lambda port: notify(f"ok {port}")))
    except OSError as exc:
        log.error("cannot listen on 127.0.0.1:%d: %s", args.port, exc)
        notify(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")
        return 2
    except Exception as exc:
        log.exception("server failed")
        notify(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
