"""The Orchestrator facade: every orch operation, once, for both front ends.

The `orch` CLI and the language server are thin adapters over this class, so they can never
disagree. It owns the project config, the machine providers and the connection pool; long-
lived things (the local machine's server) run in their own processes and are found through
their state files, so any number of Orchestrators can coexist without starting duplicates.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from remote_config.loader import ResolvedConfig
from remote_config.model import LocalMachine, OrchConfig, SSHMachine
from remote_config.ssh_config import LocalForwardSpec, ssh_argv
from sidecar.config import load_project_config
from sidecar.errors import NotFound, OrchError
from sidecar.layout import Layout
from sidecar.machines.base import MachineInfo, Progress, Provider, SSHTarget
from sidecar.ssh.pool import ConnectionPool


class OrchStatus(BaseModel):
    """Everything the status bar and `orch status` show (also the `orch/status` notification)."""

    machine: MachineInfo
    jobs: list[dict[str, Any]] = Field(default_factory=list)
    sync: dict[str, Any] = Field(default_factory=lambda: {"state": "off", "conflicts": []})
    ports: list[dict[str, Any]] = Field(default_factory=list)


class Orchestrator:
    def __init__(self, cwd: Path | None = None, layout: Layout | None = None) -> None:
        self.cwd = Path(cwd or os.getcwd()).absolute()
        self.layout = layout or Layout.from_env()
        self._config: ResolvedConfig | None = None
        self._providers: dict[str, Provider] = {}
        self.pool = ConnectionPool()

    # -- config ------------------------------------------------------------------------------
    @property
    def config(self) -> ResolvedConfig:
        if self._config is None:
            self._config = load_project_config(self.cwd)
        return self._config

    def reload_config(self) -> ResolvedConfig:
        self._config = None
        self._providers.clear()
        return self.config

    @staticmethod
    def config_schema() -> dict[str, Any]:
        schema = OrchConfig.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = "orch.toml"
        return schema

    def config_show(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "file": cfg.path,
            "project_root": cfg.root,
            "project_name": cfg.project_name,
            "local_dir": cfg.local_dir,
            "remote_dir": cfg.remote_dir,
            "config": cfg.config.model_dump(mode="json"),
        }

    # -- machines ----------------------------------------------------------------------------
    def machine_name(self, machine: str | None = None) -> str:
        return machine or self.config.config.project.default_machine

    def provider(self, machine: str | None = None) -> Provider:
        name = self.machine_name(machine)
        if name in self._providers:
            return self._providers[name]
        try:
            _, spec = self.config.machine(name)
        except KeyError:
            known = ", ".join(self.config.config.machine_names())
            raise NotFound(f"unknown machine {name!r}", hint=f"known machines: {known}") from None
        provider: Provider
        if isinstance(spec, LocalMachine):
            from sidecar.machines.local.provider import LocalProvider

            provider = LocalProvider(name, spec, self.layout)
        elif isinstance(spec, SSHMachine):
            from sidecar.machines.ssh_host import SSHHostProvider

            provider = SSHHostProvider(name, spec, self.layout, self.config.project_name)
        else:
            raise OrchError(
                f"machines of kind {spec.kind!r} are not supported by this version of orch yet",
                hint="use the local machine or a machine of kind 'ssh' for now",
            )
        self._providers[name] = provider
        return provider

    async def up(self, machine: str | None = None, progress: Progress | None = None) -> MachineInfo:
        info = await self.provider(machine).up(progress)
        if info.state == "running":
            await self.write_ssh_config(machine)
        return info

    async def down(self, machine: str | None = None) -> MachineInfo:
        provider = self.provider(machine)
        with_target = None
        with contextlib.suppress(OrchError):
            with_target = await provider.ssh_target()
        if with_target is not None:
            self.pool.drop(with_target.alias)
        return await provider.down()

    async def machine_status(self, machine: str | None = None) -> MachineInfo:
        return await self.provider(machine).status()

    async def status(self, machine: str | None = None) -> OrchStatus:
        return OrchStatus(machine=await self.machine_status(machine))

    async def ssh_target(self, machine: str | None = None) -> SSHTarget:
        return await self.provider(machine).ssh_target()

    # -- OpenSSH -----------------------------------------------------------------------------
    def _forwards(self, machine: str) -> tuple[LocalForwardSpec, ...]:
        return tuple(
            LocalForwardSpec(f.local, f.remote_host, f.remote_port)
            for f in self.config.config.ports
            if f.machine in (None, machine)
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

    async def close(self) -> None:
        await self.pool.close()
