"""Starts, stops and watches the embedded `local` machine (see `server.py`).

State lives in `$ORCH_HOME/machines/local/`: the host key (pinned in orch's known_hosts at
generation, the trusted channel for this machine), `authorized_keys` (orch's client key),
`state.json` (pid, port, start time; written by the server once it listens), `port` (kept so
the address is stable across restarts), `server.log` and the remote home folder `home/`.
The server holds an flock on `server.lock` while alive, so a crash (even kill -9) is seen at
once and its stale `state.json` is cleaned up.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import socket
import sys
import time
from pathlib import Path

from remote_config.model import LocalMachine
from sidecar.daemon import terminate
from sidecar.errors import MachineNotRunning, OrchError
from sidecar.layout import Layout
from sidecar.machines.base import Capabilities, MachineInfo, Progress, Provider, SSHTarget
from sidecar.ssh import keys
from sidecar.state import (
    async_file_lock,
    atomic_write,
    is_locked,
    pid_alive,
    read_json,
    secure_dir,
)

HOST_KEY_ALIAS = "orch-local"
STOP_TIMEOUT_S = 5.0


class LocalProvider(Provider):
    kind = "local"
    # Stopping shuts the embedded server down; there is nothing to pay for or destroy.
    capabilities = Capabilities(creates=True, can_stop=True, has_idle_stop=True, reach=["direct"])

    def __init__(self, name: str, spec: LocalMachine, layout: Layout, project: str) -> None:
        super().__init__(name, spec, layout, project)
        self.spec: LocalMachine = spec
        self.root = layout.machine_dir("local")

    @property
    def alias(self) -> str:
        return HOST_KEY_ALIAS  # one local machine per user, shared by every project

    # -- reading state ---------------------------------------------------------------------
    def _live_state(self) -> tuple[dict[str, float] | None, str | None]:
        """(state, note): the running server's state, or None plus a note about stale state."""
        state = read_json(self.root / "state.json")
        if not isinstance(state, dict) or "pid" not in state:
            return None, None
        pid = int(state["pid"])
        if pid_alive(pid) and is_locked(self.root / "server.lock"):
            return state, None
        with contextlib.suppress(FileNotFoundError):
            (self.root / "state.json").unlink()
        return None, f"cleaned up stale state of a server that died (pid {pid})"

    def _info(self, state: dict[str, float] | None, note: str | None = None) -> MachineInfo:
        if state is None:
            return MachineInfo(name=self.name, kind=self.kind, state="stopped", detail=note)
        return MachineInfo(
            name=self.name,
            kind=self.kind,
            state="running",
            address=f"127.0.0.1:{int(state['port'])}",
            uptime_s=round(max(0.0, time.time() - float(state["started_at"])), 1),
            pid=int(state["pid"]),
            detail=note,
        )

    async def status(self) -> MachineInfo:
        state, note = self._live_state()
        return self._info(state, note)

    # -- up / down -------------------------------------------------------------------------
    async def up(self, progress: Progress | None = None) -> MachineInfo:
        self.layout.ensure()
        secure_dir(self.root)
        async with async_file_lock(self.root / "up.lock"):
            state, _ = self._live_state()
            if state is not None:
                self._repin()  # after `orch machine forget-key local`
                return self._info(state, "already running")
            if progress:
                progress("preparing keys")
            self._ensure_keys()
            port, note = self._choose_port()
            if progress:
                progress(f"starting the local machine on 127.0.0.1:{port}")
            started = await self._spawn(port)
            atomic_write(self.root / "port", f"{started}\n", mode=0o600)
            state, _ = self._live_state()
            if state is None:
                raise OrchError(
                    "the local machine started but its state is missing",
                    hint=f"see {self.root / 'server.log'}",
                )
            return self._info(state, note)

    def _ensure_keys(self) -> None:
        client = keys.ensure_client_key(self.layout)
        host_key = self.root / "host_ed25519_key"
        if not host_key.exists():
            public = keys.generate_keypair(host_key, comment="orch-local-host")
            # Generation is the trusted channel: pin the key before anything connects.
            keys.pin_host_key(self.layout, HOST_KEY_ALIAS, public)
        elif keys.pinned_key(self.layout, HOST_KEY_ALIAS) is None:
            keys.pin_host_key(self.layout, HOST_KEY_ALIAS, keys.public_line(host_key))
        atomic_write(self.root / "authorized_keys", keys.public_line(client) + "\n", mode=0o600)

    def _repin(self) -> None:
        host_key = self.root / "host_ed25519_key"
        if host_key.exists() and keys.pinned_key(self.layout, HOST_KEY_ALIAS) is None:
            keys.pin_host_key(self.layout, HOST_KEY_ALIAS, keys.public_line(host_key))

    def _choose_port(self) -> tuple[int, str | None]:
        if self.spec.port is not None:
            return self.spec.port, None
        saved = (self.root / "port").read_text().strip() if (self.root / "port").exists() else ""
        if saved.isdigit():
            if _port_free(int(saved)):
                return int(saved), None
            return 0, f"port {saved} was taken by another program; moved to a new port"
        return 0, None

    async def _spawn(self, port: int) -> int:
        argv = [
            sys.executable,
            "-m",
            "sidecar.machines.local.server",
            "--root",
            str(self.root),
            "--port",
            str(port),
            "--detach",
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = _package_root() + os.pathsep + env.get("PYTHONPATH", "")
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
        except TimeoutError:
            proc.kill()
            raise OrchError(
                "the local machine did not start within 20 s",
                hint=f"see {self.root / 'server.log'}",
            ) from None
        message = out.decode().strip()
        if proc.returncode != 0 or not message.startswith("ok "):
            detail = message.removeprefix("error: ") or err.decode().strip()[-500:]
            hint = f"see {self.root / 'server.log'}"
            if port and "in use" in detail.lower():
                hint = (
                    f"another program uses port {port}; free it or set another "
                    "[machines.local] port in orch.toml"
                )
            raise OrchError(f"the local machine failed to start: {detail}", hint=hint)
        return int(message.split()[1])

    async def down(self) -> MachineInfo:
        if not self.root.exists():
            return self._info(None, "it was not running")
        async with async_file_lock(self.root / "up.lock"):
            state, note = self._live_state()
            if state is None:
                return self._info(None, note or "it was not running")
            await terminate(int(state["pid"]), STOP_TIMEOUT_S)
            with contextlib.suppress(FileNotFoundError):
                (self.root / "state.json").unlink()
            return self._info(None)

    async def ssh_target(self) -> SSHTarget:
        state, _ = self._live_state()
        if state is None:
            raise MachineNotRunning("the local machine is not running", hint="start it: orch up")
        return SSHTarget(
            alias=HOST_KEY_ALIAS,
            host="127.0.0.1",
            port=int(state["port"]),
            user=getpass.getuser(),
            identity_file=str(self.layout.client_key),
            host_key_alias=HOST_KEY_ALIAS,
            known_hosts_file=str(self.layout.known_hosts),
            server_alive_interval=self.spec.server_alive_interval,
            server_alive_count_max=self.spec.server_alive_count_max,
            compression=self.spec.compression,
        )

    @property
    def home(self) -> Path:
        """The machine's remote home folder (what `~` means on it)."""
        return self.root / "home"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[3])
