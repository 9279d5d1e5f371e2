"""An existing server reachable over SSH (`kind = "ssh"`): orch neither creates nor stops it.

Its host key must be pinned through a trusted channel: the `host_key` line in orch.toml
(copy it from the server's console or /etc/ssh/ssh_host_ed25519_key.pub). Without one orch
refuses to connect instead of trusting whatever key the network presents.
"""

from __future__ import annotations

import asyncio
import getpass
import time

from remote_config.model import SSHMachine
from sidecar.errors import HostKeyMismatch
from sidecar.layout import Layout
from sidecar.machines.base import Capabilities, MachineInfo, Progress, Provider, SSHTarget
from sidecar.ssh import keys


class SSHHostProvider(Provider):
    kind = "ssh"
    # orch never powers such a server on or off; it may sit behind a bastion or a proxy.
    capabilities = Capabilities(reach=["direct", "proxy_command", "proxy_jump"])

    def __init__(self, name: str, spec: SSHMachine, layout: Layout, project: str) -> None:
        super().__init__(name, spec, layout, project)
        self.spec: SSHMachine = spec

    def _pin(self) -> None:
        if self.spec.host_key:
            keys.pin_host_key(self.layout, self.alias, self.spec.host_key)
        elif keys.pinned_key(self.layout, self.alias) is None:
            raise HostKeyMismatch(
                f"no host key is pinned for machine {self.name!r} ({self.spec.host})",
                hint='add host_key = "ssh-ed25519 AAAA…" to its [machines] section, copied '
                "from the server itself (/etc/ssh/ssh_host_ed25519_key.pub), not from the network",
            )

    async def _reachable(self) -> tuple[bool, float]:
        if self.spec.proxy_command or self.spec.proxy_jump:
            # Only the proxy knows the way: a TCP probe from here says nothing. The first
            # command on the machine tells (and says why when it cannot get there).
            return True, 0.0
        started = time.monotonic()
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self.spec.host, self.spec.port), timeout=5
            )
        except (TimeoutError, OSError):
            return False, 0.0
        writer.close()
        return True, time.monotonic() - started

    async def up(self, progress: Progress | None = None) -> MachineInfo:
        self.layout.ensure()
        keys.ensure_client_key(self.layout)
        self._pin()
        return await self.status()

    async def down(self) -> MachineInfo:
        info = await self.status()
        info.detail = "orch does not power off machines of kind 'ssh'; nothing was changed"
        return info

    async def status(self) -> MachineInfo:
        ok, _ = await self._reachable()
        return MachineInfo(
            name=self.name,
            kind=self.kind,
            state="running" if ok else "unknown",
            address=f"{self.spec.host}:{self.spec.port}",
            detail=self._via() if ok else "not reachable on its SSH port",
        )

    def _via(self) -> str | None:
        if self.spec.proxy_jump:
            return f"through jump host {self.spec.proxy_jump}"
        if self.spec.proxy_command:
            return "through its proxy command"
        return None

    async def ssh_target(self) -> SSHTarget:
        self._pin()
        return SSHTarget(
            alias=self.alias,
            host=self.spec.host,
            port=self.spec.port,
            user=self.spec.user or getpass.getuser(),
            identity_file=self.spec.identity_file or str(self.layout.client_key),
            host_key_alias=self.alias,
            known_hosts_file=str(self.layout.known_hosts),
            server_alive_interval=self.spec.server_alive_interval,
            server_alive_count_max=self.spec.server_alive_count_max,
            compression=self.spec.compression,
            proxy_command=self.spec.proxy_command,
            proxy_jump=self.spec.proxy_jump,
        )
