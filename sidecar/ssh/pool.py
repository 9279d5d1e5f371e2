"""The connection pool: one asyncssh connection per machine, reused for every command.

Connections verify the host key pinned in orch's known_hosts (by alias), never read the
user's ~/.ssh/config, and send keepalives. Failures are told apart: host key mismatch,
authentication failed, unreachable, timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sidecar.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectTimeout,
    HostKeyMismatch,
    RemoteCommandFailed,
    Unreachable,
)
from sidecar.machines.base import SSHTarget

if TYPE_CHECKING:
    import asyncssh

CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunResult:
    exit_status: int | None
    stdout: str
    stderr: str
    seconds: float


def connect_options(target: SSHTarget) -> dict[str, Any]:
    return {
        "host": target.host,
        "port": target.port,
        "username": target.user,
        "client_keys": [target.identity_file],
        "known_hosts": target.known_hosts_file,
        "host_key_alias": target.host_key_alias,
        "config": (),  # never read ~/.ssh/config: orch's settings are explicit
        "agent_path": None,
        "keepalive_interval": 15,
        "keepalive_count_max": 4,
        "connect_timeout": CONNECT_TIMEOUT_S,
    }


async def open_connection(target: SSHTarget) -> asyncssh.SSHClientConnection:
    import asyncssh

    where = f"{target.user}@{target.host}:{target.port}"
    try:
        return await asyncssh.connect(**connect_options(target))
    except asyncssh.HostKeyNotVerifiable as exc:
        raise HostKeyMismatch(
            f"the host key of {where} does not match the key pinned for {target.host_key_alias}",
            hint="if the machine was rebuilt, check its key out of band, then re-pin it: "
            f"orch machine forget-key {target.host_key_alias} && orch up",
        ) from exc
    except asyncssh.PermissionDenied as exc:
        raise AuthenticationFailed(
            f"authentication to {where} failed with key {target.identity_file}",
            hint="make sure the public key (.pub beside it) is in the remote authorized_keys",
        ) from exc
    except TimeoutError as exc:
        raise ConnectTimeout(
            f"connecting to {where} timed out after {CONNECT_TIMEOUT_S:.0f} s",
            hint="check the machine is running (orch status) and the network path",
        ) from exc
    except OSError as exc:
        raise Unreachable(
            f"cannot reach {where}: {exc.strerror or exc}",
            hint="is the machine up? try: orch up",
        ) from exc
    except asyncssh.Error as exc:
        raise ConnectionFailed(f"SSH to {where} failed: {exc.reason}") from exc


class ConnectionPool:
    """One open connection per SSH target alias; reconnects when a connection has dropped."""

    def __init__(self) -> None:
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def connection(self, target: SSHTarget) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(target.alias, asyncio.Lock())
        async with lock:
            conn = self._conns.get(target.alias)
            if conn is not None and not _is_closed(conn):
                return conn
            conn = await open_connection(target)
            self._conns[target.alias] = conn
            return conn

    async def run(
        self,
        target: SSHTarget,
        command: str,
        *,
        check: bool = False,
        input: str | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        import asyncssh

        started = time.perf_counter()
        for attempt in (1, 2):
            conn = await self.connection(target)
            try:
                result = await conn.run(command, input=input, check=False, timeout=timeout)
                break
            except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError):
                self.drop(target.alias)
                if attempt == 2:
                    raise Unreachable(f"the connection to {target.alias} dropped") from None
            except asyncssh.TimeoutError as exc:
                raise ConnectTimeout(f"a remote command on {target.alias} timed out") from exc
        stdout = _text(result.stdout)
        stderr = _text(result.stderr)
        out = RunResult(result.exit_status, stdout, stderr, time.perf_counter() - started)
        if check and result.exit_status != 0:
            raise RemoteCommandFailed(
                f"remote command failed with exit status {result.exit_status}: "
                f"{stderr.strip()[-500:] or stdout.strip()[-500:]}",
                exit_status=result.exit_status,
                stderr=stderr,
            )
        return out

    def drop(self, alias: str) -> None:
        conn = self._conns.pop(alias, None)
        if conn is not None:
            conn.abort()

    async def close(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), timeout=2)


def _is_closed(conn: asyncssh.SSHClientConnection) -> bool:
    transport = conn.get_extra_info("transport") if hasattr(conn, "get_extra_info") else None
    return bool(getattr(conn, "_transport", None) is None or (transport and transport.is_closing()))


def _text(data: object) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)
