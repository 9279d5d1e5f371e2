"""The one owner of a machine's port forwards, and how other processes talk to it.

Exactly one process per machine alias owns the forwards: the one holding an flock on
`$ORCH_HOME/forwards/<alias>/owner.lock` (the orch agent, `sidecar/agent/`, which hosts a
`ForwardOwner` per machine; with `ORCH_NO_AGENT=1` a small background process started by
`orch ports add`: `python -m sidecar.ssh.forwarder`).
The owner keeps `state.json` beside the lock current (pid, connection state, forwards) and
answers one-line JSON requests on a Unix socket (`add`, `remove`, `list`, `shutdown`). Every
other process reads the state file and sends requests; it never binds a forward itself, so
no duplicate can start. A dead owner (lock free) means its forwards are dead, whatever the
state file says. A background owner exits when its last forward is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from remote_config.ssh_config import LocalForwardSpec
from sidecar import daemon, errors
from sidecar.errors import OrchError
from sidecar.layout import Layout
from sidecar.machines.base import SSHTarget
from sidecar.ssh.forwards import ForwardPaths, ForwardSet, forward_paths
from sidecar.ssh.pool import ConnectionPool, ConnState
from sidecar.state import (
    is_locked,
    read_json,
    secure_dir,
    serve_as_owner,
    stop_serving,
    write_json,
)

log = logging.getLogger("orch.forwarder")
REQUEST_TIMEOUT_S = 40.0
START_TIMEOUT_S = 20.0
IDLE_EXIT_S = 60.0


class ForwardOwner:
    """Hosts a machine's forwards in this process (the sidecar, or the background forwarder)."""

    def __init__(
        self,
        layout: Layout,
        pool: ConnectionPool,
        target: SSHTarget,
        machine: str,
        *,
        exit_when_empty: bool = False,
    ) -> None:
        self.layout = layout
        self.paths = forward_paths(layout, target.alias)
        self.pool = pool
        self.target = target
        self.machine = machine
        self.exit_when_empty = exit_when_empty
        self.forwards = ForwardSet(pool, target, self.write_state)
        # Forwards a crashed owner had that could not be brought back (their port was taken
        # meanwhile): listed as dead, with why, until added again or the owner stops.
        self.lost: list[dict[str, Any]] = []
        self.done = asyncio.Event()
        self._lock_fd: int | None = None
        self._server: asyncio.AbstractServer | None = None
        self._stopping = False
        pool.add_listener(self._on_connection)

    async def start(self) -> bool:
        """Become the owner; False (and nothing started) when another process already is."""
        owned = await serve_as_owner(self.paths.lock, self.paths.socket, self._serve)
        if owned is None:
            return False
        self._lock_fd, self._server = owned
        self.write_state()
        return True

    async def stop(self) -> None:
        if self._stopping:
            await self.done.wait()
            return
        self._stopping = True
        await self.forwards.close()
        if self._server is not None:
            server, self._server = self._server, None
            await stop_serving(server, self.paths.socket)
        with contextlib.suppress(FileNotFoundError):
            self.paths.socket.unlink()
        self.write_state(stopping=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self.done.set()

    def _on_connection(self, alias: str, state: ConnState, error: OrchError | None) -> None:
        if alias == self.target.alias and self._lock_fd is not None:
            self.write_state()

    def write_state(self, stopping: bool = False) -> None:
        error = self.pool.last_error(self.target.alias)
        state = self.forwards.state()
        write_json(
            self.paths.state,
            {
                "pid": None if stopping else os.getpid(),
                "alias": self.target.alias,
                "machine": self.machine,
                "updated": time.time(),
                "connection": self.pool.state(self.target.alias),
                "error": error.message if error else None,
                "forwards": [
                    {
                        "local_port": s.local_port,
                        "remote_host": s.remote_host,
                        "remote_port": s.remote_port,
                        "reverse": s.reverse,
                        "state": state,
                        "error": self.forwards.reverse_errors.get(s.remote_port)
                        if s.reverse
                        else None,
                    }
                    for s in ([] if stopping else self.forwards.specs())
                ],
                "lost": [] if stopping else self.lost,
            },
        )

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "add":
            spec = LocalForwardSpec(
                int(request["local_port"]),
                str(request.get("remote_host") or "127.0.0.1"),
                int(request["remote_port"]),
                bool(request.get("reverse", False)),
            )
            added = await self.forwards.add(spec)
            self.lost = [x for x in self.lost if _lost_key(x) != (spec.reverse, spec.local_port)]
            return {"ok": True, "added": added, "state": self.forwards.state()}
        if op == "remove":
            removed = await self.forwards.remove(
                int(request["local_port"]), bool(request.get("reverse", False))
            )
            return {"ok": True, "removed": removed}
        if op == "list":
            return {"ok": True}
        if op == "shutdown":
            return {"ok": True, "shutdown": True}
        return {"ok": False, "kind": "UsageError", "message": f"unknown request {op!r}"}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reply: dict[str, Any]
        try:
            request = json.loads(await reader.readline())
            if self._stopping:
                # Accepted just before this owner let go (its last forward went): the client
                # starts a new owner (add) or finds nothing to remove, instead of waiting.
                reply = {
                    "ok": False,
                    "kind": "ConnectionFailed",
                    "message": "the port forwarder is stopping",
                }
            else:
                reply = await self.handle(request)
        except OrchError as exc:
            reply = {"ok": False, "kind": exc.kind, "message": exc.message, "hint": exc.hint}
        except Exception as exc:
            log.exception("request failed")
            reply = {"ok": False, "kind": "OrchError", "message": f"forwarder: {exc}"}
        except BaseException:
            writer.close()  # cancelled: the client sees the request closed, never a silence
            raise
        with contextlib.suppress(Exception):
            writer.write((json.dumps(reply) + "\n").encode())
            await writer.drain()
        writer.close()
        if reply.get("shutdown") or (self.exit_when_empty and not self.forwards.specs()):
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.stop()))


def _lost_key(raw: dict[str, Any]) -> tuple[bool, int]:
    return bool(raw.get("reverse")), int(raw.get("local_port", 0))


# -- clients --------------------------------------------------------------------------------


def owner_alive(paths: ForwardPaths) -> bool:
    return is_locked(paths.lock)


def read_state(paths: ForwardPaths) -> dict[str, Any]:
    state = read_json(paths.state)
    return state if isinstance(state, dict) else {}


def _raise(reply: dict[str, Any]) -> None:
    kind = getattr(errors, str(reply.get("kind")), OrchError)
    if not (isinstance(kind, type) and issubclass(kind, OrchError)):
        kind = OrchError
    raise kind(str(reply.get("message")), hint=reply.get("hint"))


async def request(paths: ForwardPaths, payload: dict[str, Any]) -> dict[str, Any]:
    """Send one request to the owner; its OrchError comes back as the same exception class."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(paths.socket))
    except OSError as exc:
        raise errors.ConnectionFailed(
            f"the port forwarder is not answering ({exc.strerror or exc})",
            hint=f"see {paths.log}",
        ) from None
    try:
        writer.write((json.dumps(payload) + "\n").encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
    except ConnectionError:  # the owner exited meanwhile (its last forward went away)
        line = b""
    finally:
        writer.close()
    reply = json.loads(line or b"{}")
    if not reply.get("ok"):
        _raise(reply or {"message": "the port forwarder closed the request"})
    return dict(reply)


async def spawn_owner(layout: Layout, target: SSHTarget, machine: str) -> None:
    """Start a background forwarder unless some process already owns this machine's forwards."""
    paths = forward_paths(layout, target.alias)
    if owner_alive(paths):
        return
    secure_dir(paths.folder)
    argv = [
        sys.executable,
        "-m",
        "sidecar.ssh.forwarder",
        "--home",
        str(layout.home),
        "--machine",
        machine,
        "--target",
        target.model_dump_json(),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = (
        str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    )
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), START_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        raise OrchError("the port forwarder did not start", hint=f"see {paths.log}") from None
    message = out.decode().strip()
    if message != "ok" and not message.startswith("busy"):
        raise OrchError(f"the port forwarder failed to start: {message}", hint=f"see {paths.log}")


# -- the background process -----------------------------------------------------------------


async def _serve(layout: Layout, target: SSHTarget, machine: str, notify: Any) -> int:
    pool = ConnectionPool()
    owner = ForwardOwner(layout, pool, target, machine, exit_when_empty=True)
    if not await owner.start():
        notify("busy: another process owns these forwards")
        return 0
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(owner.stop()))
    notify("ok")
    # A launcher that died before its first request must not leave an idle forwarder behind.
    loop.call_later(
        IDLE_EXIT_S, lambda: owner.forwards.specs() or asyncio.ensure_future(owner.stop())
    )
    await owner.done.wait()
    await pool.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orch-forwarder")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--machine", required=True)
    parser.add_argument("--target", required=True, help="SSHTarget as JSON")
    args = parser.parse_args(argv)
    layout = Layout(args.home)
    target = SSHTarget.model_validate_json(args.target)
    paths = forward_paths(layout, target.alias)
    ready = daemon.start(paths.log, "the port forwarder", background=True)
    if isinstance(ready, int):
        return 0  # the launcher's side: spawn_owner reads the relayed line
    notify = ready.say

    try:
        return asyncio.run(_serve(layout, target, machine=args.machine, notify=notify))
    except Exception as exc:
        log.exception("forwarder failed")
        notify(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
