"""Local port forwards carried by the pooled asyncssh connection (`ForwardSet`).

orch binds each local port itself (exactly that port on 127.0.0.1, `local_ports.bind_exact`)
and opens one SSH `direct-tcpip` channel per accepted client on the pool's connection. The
listening socket does not belong to the SSH connection, so when the connection drops the port
stays bound by orch (nobody can take it, it never moves); clients that arrive while the pool
reconnects wait for it (`pool.wait_connected`), and every later client uses the new
connection: forwards come back by themselves. Why not OpenSSH's master (`ssh -O forward`):
see docs/ssh.md.
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
from sidecar.errors import Conflict, OrchError
from sidecar.layout import Layout
from sidecar.machines.base import SSHTarget
from sidecar.ssh.local_ports import bind_exact
from sidecar.ssh.pool import ConnectionPool

log = logging.getLogger("orch.forwards")

CLIENT_WAIT_S = 30.0  # how long a client arriving during a reconnect waits for the connection
_CHUNK = 65536

ForwardState = Literal["active", "reconnecting", "dead", "stopped"]


class PortForwardInfo(BaseModel):
    """One forward as `orch ports list` and `orch.ports.list` show it."""

    local_port: int
    remote_host: str = "127.0.0.1"
    remote_port: int
    state: ForwardState
    machine: str | None = None
    owner_pid: int | None = None
    from_config: bool = False
    detail: str | None = None


class PortsResult(BaseModel):
    ports: list[PortForwardInfo]


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

    def specs(self) -> list[LocalForwardSpec]:
        return [spec for spec, _ in self._servers.values()]

    def state(self) -> ForwardState:
        return "active" if self.pool.state(self.target.alias) == "connected" else "reconnecting"

    async def add(self, spec: LocalForwardSpec) -> bool:
        """Start forwarding; False if this exact forward already runs. Never moves the port."""
        current = self._servers.get(spec.local_port)
        if current is not None:
            if current[0] == spec:
                return False
            old = current[0]
            raise Conflict(
                f"local port {spec.local_port} already forwards to "
                f"{old.remote_host}:{old.remote_port}",
                hint=f"remove it first: orch ports remove {spec.local_port}",
            )
        # Connect first so a wrong host key or key is reported now, not on the first client.
        await self.pool.connection(self.target)
        sock = bind_exact(spec.local_port)
        server = await asyncio.start_server(
            lambda r, w: self._client(spec, r, w), sock=sock, limit=_CHUNK
        )
        self._servers[spec.local_port] = (spec, server)
        self._streams[spec.local_port] = set()
        self.pool.keep(self.target)
        self.on_change()
        return True

    async def remove(self, local_port: int) -> bool:
        entry = self._servers.pop(local_port, None)
        if entry is None:
            return False
        _, server = entry
        server.close()
        for task in self._streams.pop(local_port, set()):
            task.cancel()
        self.pool.release(self.target.alias)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), timeout=2)
        self.on_change()
        return True

    async def close(self) -> None:
        for port in list(self._servers):
            await self.remove(port)

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
        if task is not None and streams is not None:
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
            if task is not None and streams is not None:
                streams.discard(task)
