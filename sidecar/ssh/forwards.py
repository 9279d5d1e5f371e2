"""Port forwards carried by the pooled asyncssh connection (`ForwardSet`).

orch binds each local port itself (exactly that port on 127.0.0.1, `local_ports.bind_exact`)
and opens one SSH `direct-tcpip` channel per accepted client on the pool's connection. The
listening socket does not belong to the SSH connection, so when the connection drops the port
stays bound by orch (nobody can take it, it never moves); clients that arrive while the pool
reconnects wait for it (`pool.wait_connected`), and every later client uses the new
connection: forwards come back by themselves. Why not OpenSSH's master (`ssh -O forward`):
see docs/ssh.md.

Reverse forwards (the machine's port reaches this computer, OpenSSH's RemoteForward) live on
the connection itself (`forward_remote_port`): the machine's listener goes away with a
dropped connection, so each one is requested again on every new connection the pool makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from remote_config.ssh_config import LocalForwardSpec
from sidecar.errors import Conflict, OrchError, PortBusy
from sidecar.layout import Layout
from sidecar.machines.base import SSHTarget
from sidecar.ssh.local_ports import bind_exact
from sidecar.ssh.pool import ConnectionPool
from sidecar.state import stop_serving

log = logging.getLogger("orch.forwards")

CLIENT_WAIT_S = 30.0  # how long a client arriving during a reconnect waits for the connection
_CHUNK = 65536

ForwardState = Literal["active", "reconnecting", "dead", "stopped", "direct"]
Key = tuple[bool, int]  # (reverse, the port that listens): see LocalForwardSpec.key


class PortForwardInfo(BaseModel):
    """One forward as `orch ports list` and `orch.ports.list` show it."""

    local_port: int
    remote_host: str = "127.0.0.1"
    remote_port: int
    state: ForwardState
    machine: str | None = None
    owner_pid: int | None = None
    from_config: bool = False
    reverse: bool = False
    detail: str | None = None


class PortsResult(BaseModel):
    ports: list[PortForwardInfo]

    def with_failed(self, failed: list[PortForwardInfo]) -> PortsResult:
        """Merge forwards that could not be restarted: they replace a `stopped` entry for the
        same forward (orch.toml's), or are added as `dead`."""

        def key(p: PortForwardInfo) -> tuple[bool, int]:
            return (p.reverse, p.remote_port if p.reverse else p.local_port)

        by_key = {key(p): p for p in failed}
        kept = [p for p in self.ports if key(p) not in by_key or p.state not in ("stopped",)]
        running = {key(p) for p in kept}
        for info in failed:
            info.from_config = any(key(p) == key(info) and p.from_config for p in self.ports)
        self.ports = kept + [p for k, p in by_key.items() if k not in running]
        return self


@dataclass(frozen=True)
class ForwardPaths:
    """Where one machine's forwarder keeps its state (any process can read it)."""

    folder: Path  # $ORCH_HOME/forwards/<alias>
    socket: Path  # the owner's control socket (in the short control folder)

    @property
    def state(self) -> Path:
        return self.folder / "state.json"

    @property
    def lock(self) -> Path:
        return self.folder / "owner.lock"

    @property
    def log(self) -> Path:
        return self.folder / "forwarder.log"


def forward_paths(layout: Layout, alias: str) -> ForwardPaths:
    digest = hashlib.sha256(f"{layout.home}\0{alias}".encode()).hexdigest()[:12]
    return ForwardPaths(layout.home / "forwards" / alias, layout.control_dir / f"fwd-{digest}")


async def _pipe(source: Any, sink: Any) -> None:
    try:
        while data := await source.read(_CHUNK):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError, OrchError):
        pass
    except Exception as exc:  # asyncssh errors on a dropped connection
        log.debug("pipe ended: %s", exc)
    finally:
        with contextlib.suppress(Exception):
            if sink.can_write_eof():
                sink.write_eof()


class ForwardSet:
    """The forwards of one machine, owned by the process that runs this object."""

    def __init__(
        self, pool: ConnectionPool, target: SSHTarget, on_change: Callable[[], None]
    ) -> None:
        self.pool = pool
        self.target = target
        self.on_change = on_change
        self._servers: dict[int, tuple[LocalForwardSpec, asyncio.Server]] = {}
        self._streams: dict[int, set[asyncio.Task[Any]]] = {}
        # reverse: the machine's port -> (spec, its listener, the connection it lives on)
        self._reverse: dict[int, tuple[LocalForwardSpec, Any, Any]] = {}
        self.reverse_errors: dict[int, str] = {}
        self._restoring: set[asyncio.Future[None]] = set()
        pool.add_listener(self._on_pool)

    def specs(self) -> list[LocalForwardSpec]:
        return [spec for spec, _ in self._servers.values()] + [
            spec for spec, _, _ in self._reverse.values()
        ]

    def state(self) -> ForwardState:
        return "active" if self.pool.state(self.target.alias) == "connected" else "reconnecting"

    def _current(self, key: Key) -> LocalForwardSpec | None:
        reverse, port = key
        entry = self._reverse.get(port) if reverse else self._servers.get(port)
        return entry[0] if entry else None

    async def add(self, spec: LocalForwardSpec) -> bool:
        """Start forwarding; False if this exact forward already runs. Never moves the port."""
        old = self._current(spec.key)
        if old is not None:
            if old == spec:
                return False
            where, port = ("remote", spec.key[1]) if spec.reverse else ("local", spec.key[1])
            flag = "--reverse " if spec.reverse else ""
            raise Conflict(
                f"{where} port {port} is already forwarded "
                f"({old.local_port} {'<-' if old.reverse else '->'} "
                f"{old.remote_host}:{old.remote_port})",
                hint=f"remove it first: orch ports remove {flag}{port}",
            )
        # Connect first so a wrong host key or key is reported now, not on the first client.
        conn = await self.pool.connection(self.target)
        if spec.reverse:
            listener = await self._listen_remote(conn, spec)
            self._reverse[spec.remote_port] = (spec, listener, conn)
            self.pool.keep(self.target)
            self.on_change()
            return True
        sock = bind_exact(spec.local_port)
        server = await asyncio.start_server(
            lambda r, w: self._client(spec, r, w), sock=sock, limit=_CHUNK
        )
        self._servers[spec.local_port] = (spec, server)
        self._streams[spec.local_port] = set()
        self.pool.keep(self.target)
        self.on_change()
        return True

    async def _listen_remote(self, conn: Any, spec: LocalForwardSpec) -> Any:
        """Ask the machine to listen on remote_host:remote_port and tunnel each client here."""
        import asyncssh

        try:
            return await conn.forward_remote_port(
                spec.remote_host, spec.remote_port, "127.0.0.1", spec.local_port
            )
        except asyncssh.ChannelListenError as exc:
            raise PortBusy(
                f"the machine refused to listen on {spec.remote_host}:{spec.remote_port} "
                f"({exc or 'port in use or not allowed'})",
                hint="pick another remote port (orch ports add --reverse LOCAL:REMOTE), or "
                "allow TCP forwarding in the machine's sshd (AllowTcpForwarding)",
            ) from None

    def _on_pool(self, alias: str, state: str, error: OrchError | None) -> None:
        if alias == self.target.alias and state == "connected" and self._reverse:
            task = asyncio.ensure_future(self._restore_reverse())
            self._restoring.add(task)
            task.add_done_callback(self._restoring.discard)

    async def _restore_reverse(self) -> None:
        """After a reconnect: listen again on the machine for every reverse forward."""
        try:
            conn = await self.pool.wait_connected(self.target.alias, timeout=CLIENT_WAIT_S)
        except OrchError:
            return
        for port, (spec, _listener, on) in list(self._reverse.items()):
            if on is conn or self._reverse.get(port, (None, None, None))[0] != spec:
                continue
            try:
                listener = await self._listen_remote(conn, spec)
            except Exception as exc:  # keep it; the next reconnect tries again
                self.reverse_errors[port] = str(exc)
                log.warning("reverse forward %d: %s", port, exc)
                continue
            self.reverse_errors.pop(port, None)
            if self._reverse.get(port, (None,))[0] == spec:
                self._reverse[port] = (spec, listener, conn)
            else:
                listener.close()
        self.on_change()

    async def remove(self, local_port: int, reverse: bool = False) -> bool:
        if reverse:
            rentry = self._reverse.pop(local_port, None)
            if rentry is None:
                return False
            with contextlib.suppress(Exception):
                rentry[1].close()
            self.reverse_errors.pop(local_port, None)
            self.pool.release(self.target.alias)
            self.on_change()
            return True
        entry = self._servers.pop(local_port, None)
        if entry is None:
            return False
        _, server = entry
        streams = self._streams.pop(local_port, set())
        # A client the loop accepted just now is set up (and closed at once: its forward is
        # gone, see `_client`) before the listener closes, never leaked mid set-up.
        await stop_serving(server)
        for task in streams:
            task.cancel()
        self.pool.release(self.target.alias)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await server.wait_closed()
        self.on_change()
        return True

    async def close(self) -> None:
        for port in list(self._servers):
            await self.remove(port)
        for port in list(self._reverse):
            await self.remove(port, reverse=True)

    async def _open_channel(self, spec: LocalForwardSpec) -> tuple[Any, Any]:
        import asyncssh

        for attempt in (1, 2):
            conn = await self.pool.wait_connected(self.target.alias, timeout=CLIENT_WAIT_S)
            try:
                return await conn.open_connection(spec.remote_host, spec.remote_port)
            except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError):
                if attempt == 2:
                    raise
                self.pool.drop(self.target.alias)  # a dead connection not noticed yet
        raise AssertionError("unreachable")

    async def _client(
        self, spec: LocalForwardSpec, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        streams = self._streams.get(spec.local_port)
        if streams is None:  # accepted as its forward was removed
            writer.close()
            return
        if task is not None:
            streams.add(task)
        try:
            try:
                remote_reader, remote_writer = await self._open_channel(spec)
            except Exception as exc:  # refused, unreachable: this client only
                log.warning("forward %d: cannot open channel: %s", spec.local_port, exc)
                return
            try:
                await asyncio.gather(_pipe(reader, remote_writer), _pipe(remote_reader, writer))
            finally:
                remote_writer.close()
        finally:
            writer.close()
            if task is not None:
                streams.discard(task)
