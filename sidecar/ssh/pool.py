"""The connection pool: one asyncssh connection per machine, reused for every command.

Connections verify the host key pinned in orch's known_hosts (by alias), never read the
user's ~/.ssh/config, and send keepalives (per machine; default 15 s, 4 missed = dead).
Failures are told apart:
`HostKeyMismatch`, `AuthenticationFailed`, `Unreachable`, `ConnectTimeout` (all
`ConnectionFailed`, exit code 5).

API for other components (jobs log-follow, sync, port forwards):

- `await pool.run(target, "cmd")` runs a command on the shared connection (opening it if
  needed). A command whose session could not even be opened on a dead connection is retried
  once on a fresh one; a drop while it runs raises `Unreachable` (it may or may not have run).
- `await pool.connection(target)` returns the open `asyncssh.SSHClientConnection`.
- `pool.keep(target)` / `pool.release(alias)`: while kept (reference counted), a dropped
  connection is re-opened in the background with exponential backoff and jitter
  (`Backoff`: 0.2 s doubling to at most 10 s, each delay drawn from [d/2, d]) until it is back
  or released. Nothing is retried for connections nobody keeps: the next call reconnects.
- `await pool.wait_connected(alias, timeout=None)` returns the connection once it is up
  (immediately when it is): use it to resume after a drop instead of sleeping.
- `pool.add_listener(callback)` registers `callback(alias, state, error)`, called on every
  change of `pool.state(alias)`: "connected", "reconnecting" (with the last error, if any)
  or "closed" (released or pool closed). Callbacks run on the event loop; keep them short.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from remote_config.ssh_config import expand_proxy_command, parse_jump
from sidecar.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectTimeout,
    HostKeyMismatch,
    OrchError,
    RemoteCommandFailed,
    Unreachable,
)
from sidecar.machines.base import SSHTarget

if TYPE_CHECKING:
    import asyncssh

CONNECT_TIMEOUT_S = 10.0

ConnState = Literal["connected", "reconnecting", "closed"]
Listener = Callable[[str, ConnState, OrchError | None], None]


@dataclass(frozen=True)
class RunResult:
    exit_status: int | None
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class Backoff:
    """Bounded exponential backoff with jitter: attempt n waits in [d/2, d], d = min(max, i*f^n)."""

    initial: float = 0.2
    factor: float = 2.0
    maximum: float = 10.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        cap = min(self.maximum, self.initial * self.factor ** min(attempt, 32))
        return cap / 2 + rng() * cap / 2


def connect_options(target: SSHTarget, timeout: float = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    options = _base_options(target, timeout)
    if target.proxy_command:
        # The same command OpenSSH runs (sh -c), so both paths reach the machine one way.
        options["proxy_command"] = expand_proxy_command(
            target.proxy_command, target.host, target.port, target.user
        )
    elif target.proxy_jump:
        # asyncssh tunnels through a first connection to the jump host; that hop is checked
        # against the user's own known_hosts, like OpenSSH's ProxyJump.
        host, port, user = parse_jump(target.proxy_jump, target.user)
        options["tunnel"] = f"{user}@{host}:{port}"
    return options


def _base_options(target: SSHTarget, timeout: float) -> dict[str, Any]:
    return {
        "host": target.host,
        "port": target.port,
        "username": target.user,
        "client_keys": [target.identity_file],
        "known_hosts": target.known_hosts_file,
        "host_key_alias": target.host_key_alias,
        "config": (),  # never read ~/.ssh/config: orch's settings are explicit
        "agent_path": None,
        "keepalive_interval": target.server_alive_interval,
        "keepalive_count_max": target.server_alive_count_max,
        # zlib only when the machine asks for it (slow links); "none" is always acceptable.
        "compression_algs": ["zlib@openssh.com", "none"] if target.compression else ["none"],
        "connect_timeout": timeout,
    }


async def open_connection(
    target: SSHTarget, timeout: float = CONNECT_TIMEOUT_S
) -> asyncssh.SSHClientConnection:
    import asyncssh

    where = f"{target.user}@{target.host}:{target.port}"
    try:
        return await asyncssh.connect(**connect_options(target, timeout))
    except asyncssh.HostKeyNotVerifiable as exc:
        raise HostKeyMismatch(
            f"the host key of {where} does not match the key pinned for {target.host_key_alias}",
            hint="if the machine was rebuilt, check its new key out of band (its console, or "
            "/etc/ssh/ssh_host_ed25519_key.pub on it), then re-pin it: "
            f"orch machine forget-key {target.host_key_alias} && orch up "
            "(for kind 'ssh': put the checked key in host_key in orch.toml)",
        ) from exc
    except asyncssh.PermissionDenied as exc:
        raise AuthenticationFailed(
            f"authentication to {where} failed with key {target.identity_file}",
            hint="make sure the public key (.pub beside it) is in the remote authorized_keys",
        ) from exc
    except TimeoutError as exc:
        raise ConnectTimeout(
            f"connecting to {where} timed out after {timeout:g} s",
            hint="check the machine is running (orch status) and the network path",
        ) from exc
    except FileNotFoundError as exc:  # a key file, not the network
        raise AuthenticationFailed(
            f"cannot connect to {where}: {exc.filename or 'a key file'} does not exist",
            hint="orch creates its key on `orch up`; for identity_file in orch.toml, check "
            "the path",
        ) from exc
    except (OSError, asyncssh.ConnectionLost) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise Unreachable(
            f"cannot reach {where}: {reason}",
            hint="is the machine up? try: orch up",
            action="machine.up",
        ) from exc
    except asyncssh.Error as exc:
        raise ConnectionFailed(f"SSH to {where} failed: {exc.reason}") from exc


@dataclass
class _Slot:
    target: SSHTarget
    conn: asyncssh.SSHClientConnection | None = None
    state: ConnState = "closed"
    up: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    kept: int = 0
    error: OrchError | None = None
    watcher: asyncio.Task[None] | None = None
    reconnector: asyncio.Task[None] | None = None


class ConnectionPool:
    """One open connection per SSH target alias; kept connections come back after a drop."""

    def __init__(
        self, *, connect_timeout: float = CONNECT_TIMEOUT_S, backoff: Backoff | None = None
    ) -> None:
        self.connect_timeout = connect_timeout
        self.backoff = backoff or Backoff()
        self._slots: dict[str, _Slot] = {}
        self._listeners: list[Listener] = []

    # -- state ------------------------------------------------------------------------------
    def add_listener(self, callback: Listener) -> None:
        self._listeners.append(callback)

    def state(self, alias: str) -> ConnState:
        slot = self._slots.get(alias)
        return slot.state if slot else "closed"

    def connections(self) -> dict[str, ConnState]:
        """Every alias this pool knows, with its connection's state."""
        return {alias: slot.state for alias, slot in self._slots.items()}

    def last_error(self, alias: str) -> OrchError | None:
        slot = self._slots.get(alias)
        return slot.error if slot else None

    def _slot(self, target: SSHTarget) -> _Slot:
        slot = self._slots.get(target.alias)
        if slot is None:
            slot = self._slots[target.alias] = _Slot(target)
        else:
            slot.target = target  # the address may have moved (local machine restarted)
        return slot

    def _set(self, slot: _Slot, state: ConnState, error: OrchError | None = None) -> None:
        slot.error = error
        changed = slot.state != state or error is not None
        slot.state = state
        if state == "connected":
            slot.up.set()
        else:
            slot.up.clear()
        if changed:
            for callback in list(self._listeners):
                callback(slot.target.alias, state, error)

    # -- connections ------------------------------------------------------------------------
    async def connection(self, target: SSHTarget) -> asyncssh.SSHClientConnection:
        slot = self._slot(target)
        async with slot.lock:
            if slot.conn is not None and not _is_closed(slot.conn):
                return slot.conn
            conn = await open_connection(slot.target, self.connect_timeout)
            self._adopt(slot, conn)
            return conn

    def _adopt(self, slot: _Slot, conn: asyncssh.SSHClientConnection) -> None:
        slot.conn = conn
        if slot.watcher is not None:
            slot.watcher.cancel()
        slot.watcher = asyncio.create_task(self._watch(slot, conn))
        self._set(slot, "connected")

    async def _watch(self, slot: _Slot, conn: asyncssh.SSHClientConnection) -> None:
        """Event-driven: wakes when the connection closes, for whatever reason."""
        with contextlib.suppress(Exception):
            await conn.wait_closed()
        if slot.conn is not conn:
            return
        slot.conn = None
        if slot.kept > 0:
            self._set(slot, "reconnecting")
            self._start_reconnect(slot)
        else:
            self._set(slot, "closed")

    def _start_reconnect(self, slot: _Slot) -> None:
        if slot.reconnector is None or slot.reconnector.done():
            slot.reconnector = asyncio.create_task(self._reconnect(slot))

    async def _reconnect(self, slot: _Slot) -> None:
        attempt = 0
        while slot.kept > 0:
            try:
                await self.connection(slot.target)
                return
            except OrchError as exc:
                self._set(slot, "reconnecting", exc)
            await asyncio.sleep(self.backoff.delay(attempt))
            attempt += 1

    def keep(self, target: SSHTarget) -> None:
        """Keep this machine's connection open: reconnect in the background after drops."""
        slot = self._slot(target)
        slot.kept += 1
        if slot.conn is None or _is_closed(slot.conn):
            if slot.state != "connected":
                self._set(slot, "reconnecting")
            self._start_reconnect(slot)

    def release(self, alias: str) -> None:
        slot = self._slots.get(alias)
        if slot is not None and slot.kept > 0:
            slot.kept -= 1
            if slot.kept == 0 and slot.reconnector is not None:
                slot.reconnector.cancel()

    async def wait_connected(
        self, alias: str, timeout: float | None = None
    ) -> asyncssh.SSHClientConnection:
        """The connection for `alias` once it is up (after a reconnect if one is under way)."""
        slot = self._slots.get(alias)
        if slot is None:
            raise Unreachable(f"no connection to {alias} was ever opened")
        while True:
            conn = slot.conn
            if conn is not None and not _is_closed(conn) and slot.state == "connected":
                return conn
            if slot.kept == 0:
                return await self.connection(slot.target)
            try:  # asyncio.timeout: 3.11's wait_for can swallow a racing cancellation
                async with asyncio.timeout(timeout):
                    await slot.up.wait()
            except TimeoutError:
                error = slot.error
                raise Unreachable(
                    f"the connection to {alias} is not back after {timeout:g} s"
                    + (f": {error.message}" if error else ""),
                    hint=error.hint if error else "is the machine up? try: orch status",
                ) from None

    # -- commands ---------------------------------------------------------------------------
    async def run(
        self,
        target: SSHTarget,
        command: str,
        *,
        check: bool = False,
        input: str | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        started = time.perf_counter()
        process = await self._start(target, command)
        result = await self._finish(target, process, input, timeout)
        stdout, stderr = _text(result.stdout), _text(result.stderr)
        out = RunResult(result.exit_status, stdout, stderr, time.perf_counter() - started)
        if check and result.exit_status != 0:
            raise RemoteCommandFailed(
                f"remote command failed with exit status {result.exit_status}: "
                f"{stderr.strip()[-500:] or stdout.strip()[-500:]}",
                exit_status=result.exit_status,
                stderr=stderr,
            )
        return out

    async def _start(self, target: SSHTarget, command: str) -> Any:
        import asyncssh

        for attempt in (1, 2):
            conn = await self.connection(target)
            try:
                return await conn.create_process(command)
            except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError) as exc:
                # The session never started, so retrying cannot run the command twice.
                self.drop(target.alias)
                if attempt == 2:
                    raise Unreachable(f"the connection to {target.alias} dropped") from exc
            except asyncssh.ChannelOpenError as exc:
                raise Unreachable(f"{target.alias} refused a session: {exc.reason}") from exc
        raise AssertionError("unreachable")

    async def _finish(
        self, target: SSHTarget, process: Any, input: str | None, timeout: float | None
    ) -> Any:
        import asyncssh

        try:
            if input is not None:
                process.stdin.write(input)
            process.stdin.write_eof()
            return await process.wait(check=False, timeout=timeout)
        except asyncssh.TimeoutError as exc:
            process.close()
            raise ConnectTimeout(f"a remote command on {target.alias} timed out") from exc
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError) as exc:
            raise Unreachable(
                f"the connection to {target.alias} dropped while a command ran "
                "(it may or may not have finished)"
            ) from exc

    def drop(self, alias: str) -> None:
        """Abort the connection (a kept one is re-opened in the background)."""
        slot = self._slots.get(alias)
        if slot is not None and slot.conn is not None:
            slot.conn.abort()

    async def close(self) -> None:
        slots, self._slots = list(self._slots.values()), {}
        for slot in slots:
            slot.kept = 0
            for task in (slot.reconnector, slot.watcher):
                if task is not None:
                    task.cancel()
            if slot.conn is not None:
                slot.conn.close()
        for slot in slots:
            if slot.conn is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await slot.conn.wait_closed()
            self._set(slot, "closed")


def _is_closed(conn: asyncssh.SSHClientConnection) -> bool:
    # The public check: the transport may be a socket or a proxy command's pipes.
    return bool(conn.is_closed())


def _text(data: object) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)
