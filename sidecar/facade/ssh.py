"""The facade's SSH side: OpenSSH config, port forwards and host keys.

orch's managed ssh config (the Host block of a machine, `orch ssh-config` for all of them,
the argv of `orch ssh`), the port forwards a machine has (listed, added from the command
line or orch.toml, removed, revived when their forwarder died; owned by this process while
the sidecar runs), and the pinned host keys (`probe` checks one, `forget_host_key` unpins
it). sidecar/ssh/*_service.py hold the logic.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from remote_config.ssh_config import LocalForwardSpec, ssh_argv
from sidecar.errors import NotFound, OrchError
from sidecar.facade.core import FacadeCore
from sidecar.results import PortForwardInfo, PortsResult, SshConfigResult


class SshFacade(FacadeCore):
    async def probe(self, machine: str | None = None) -> None:
        """Connect once, verifying the pinned host key; raises the ConnectionFailed (exit 5)
        that says why the machine cannot be reached, or returns when it can. A connection of
        its own, not the pool's: a pooled one (the agent's) was checked when it was opened,
        and the key may have changed since (`orch ssh` exiting 255 asks this)."""
        from sidecar.ssh.pool import open_connection

        conn = await open_connection(await self.ssh_target(machine))
        conn.close()

    # -- OpenSSH -----------------------------------------------------------------------------
    def _forwards(self, machine: str, *, direct: bool = False) -> tuple[LocalForwardSpec, ...]:
        """orch.toml's forwards for `machine` that orch runs (or, with `direct`, the ones
        it leaves alone because the local machine is this computer: ports_service)."""
        from sidecar.ssh.ports_service import configured, is_direct

        kind = self.provider(machine).kind
        return tuple(
            spec
            for spec in configured(self.config.config, machine)
            if is_direct(kind, spec) == direct
        )

    async def write_ssh_config(self, machine: str | None = None) -> Path:
        """Render the machine's Host block into orch's managed ssh config."""
        from sidecar.ssh.managed import host_entry, write_managed_config

        name = self.machine_name(machine)
        target = await self.ssh_target(name)
        write_managed_config(self.layout, [host_entry(self.layout, target, self._forwards(name))])
        return self.layout.ssh_config

    async def ssh_argv(
        self,
        machine: str | None = None,
        command: list[str] | None = None,
        *,
        tty: bool | None = None,
    ) -> list[str]:
        """argv running OpenSSH to the machine through the managed config."""
        name = self.machine_name(machine)
        target = await self.ssh_target(name)
        await self.write_ssh_config(name)
        remote = " ".join(command) if command else None
        return ssh_argv(str(self.layout.ssh_config), target.alias, remote, tty=bool(tty))

    async def ssh_config_show(self) -> SshConfigResult:
        from sidecar.ssh import config_service

        return await asyncio.to_thread(config_service.show, self.layout)

    async def ssh_config_write(self) -> SshConfigResult:
        """Write the Host blocks of every machine orch can reach, and the user's Include line."""
        from sidecar.ssh import config_service
        from sidecar.ssh.managed import host_entry

        entries, skipped = [], []
        for name in self.config.config.machine_names():
            try:
                target = await self.ssh_target(name)
            except OrchError as exc:
                skipped.append(f"{name}: not written ({exc.message})")
                continue
            entries.append(host_entry(self.layout, target, self._forwards(name)))
        return await asyncio.to_thread(config_service.write, self.layout, entries, skipped)

    async def ssh_config_remove(self) -> SshConfigResult:
        from sidecar.ssh import config_service

        return await asyncio.to_thread(config_service.remove, self.layout)

    async def _alias(self, name: str) -> str:
        """The machine's SSH alias, also when it is not running (for state lookups)."""
        return self.provider(name).alias

    async def ports_list(self, machine: str | None = None) -> PortsResult:
        """The machine's forwards; dead ones (their forwarder was killed) are restarted."""
        from sidecar.ssh import ports_service

        name = self.machine_name(machine)
        alias = await self._alias(name)
        failed: list[PortForwardInfo] = []
        dead = ports_service.dead_forwards(self.layout, alias)
        if dead:
            with contextlib.suppress(OrchError):  # not running: they stay listed as dead
                target = await self.ssh_target(name)
                failed = await ports_service.revive(self.layout, target, name, dead)
        return ports_service.list_ports(
            self.layout, alias, name, self._forwards(name), self._forwards(name, direct=True)
        ).with_failed(failed)

    async def ports_add(
        self,
        local_port: int,
        remote_port: int | None = None,
        remote_host: str = "127.0.0.1",
        machine: str | None = None,
        reverse: bool = False,
    ) -> PortForwardInfo:
        """Forward 127.0.0.1:local_port to remote_host:remote_port (default: orch.toml, else
        the same port) on the machine; with `reverse`, the machine's remote_host:remote_port
        to 127.0.0.1:local_port here. PortBusy names the process holding the port."""
        from sidecar.ssh import ports_service

        name = self.machine_name(machine)
        spec, from_config = ports_service.requested_spec(
            self.config.config, name, local_port, remote_port, remote_host, reverse
        )
        if ports_service.is_direct(self.provider(name).kind, spec):
            return ports_service.direct_info(spec, name, from_config)
        target = await self.ssh_target(name)
        return await ports_service.add_port(self.layout, target, name, spec)

    async def ports_add_defaults(self, machine: str | None = None) -> PortsResult:
        """Start every forward orch.toml declares for the machine."""
        name = self.machine_name(machine)
        for spec in self._forwards(name):
            await self.ports_add(
                spec.local_port, spec.remote_port, spec.remote_host, name, spec.reverse
            )
        return await self.ports_list(name)

    async def ports_remove(
        self, port: int, machine: str | None = None, reverse: bool = False
    ) -> PortsResult:
        """Stop forwarding local `port` (with `reverse`: the machine's `port`)."""
        from sidecar.ssh.ports_service import remove_port

        name = self.machine_name(machine)
        await remove_port(self.layout, await self._alias(name), name, port, reverse)
        return await self.ports_list(name)

    async def host_forward_owner(self, machine: str | None = None) -> bool:
        """Own the machine's forwards in this process (the sidecar does this while it runs);
        False when another process already owns them (requests then go to it)."""
        from sidecar.ssh.forwarder import ForwardOwner

        name = self.machine_name(machine)
        if name in self._forward_owners:
            return True
        owner = ForwardOwner(self.layout, self.pool, await self.ssh_target(name), name)
        if not await owner.start():
            return False
        self._forward_owners[name] = owner
        return True

    def forget_host_key(self, name: str) -> str:
        """Unpin a machine's host key (after the user checked the new one); returns the alias."""
        from sidecar.ssh import keys

        alias = name
        if name in self.config.config.machine_names():
            alias = self.provider(name).alias
        if not keys.unpin_host_key(self.layout, alias):
            raise NotFound(
                f"no host key is pinned for {name!r}", hint="see the pinned keys: orch status"
            )
        return alias
