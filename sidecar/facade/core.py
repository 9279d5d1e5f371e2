"""The facade's core: the state and lookups every area of the Orchestrator shares.

`FacadeCore` owns the project config (read on first use, forgotten when orch.toml changes,
and `orch config init/show/schema`), the machine providers, the connection pool, the port
forward owners and job backends it keeps, and the per-machine lookups every area builds on:
`machine_name`, `provider`, `context` (what services get), `ssh_target`, `read_timeout_s`.
The areas of this package derive from it; `sidecar.app.Orchestrator` composes them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remote_config.loader import ResolvedConfig
from remote_config.model import OrchConfig
from sidecar.config import load_project_config
from sidecar.errors import NotFound
from sidecar.layout import Layout
from sidecar.machines.base import Provider, SSHTarget
from sidecar.ssh.pool import ConnectionPool

if TYPE_CHECKING:
    from sidecar.context import MachineContext
    from sidecar.jobs.backend import JobBackend
    from sidecar.ssh.forwarder import ForwardOwner


class FacadeCore:
    def __init__(
        self, cwd: Path | None = None, layout: Layout | None = None, one_shot: bool = False
    ) -> None:
        self.cwd = Path(cwd or os.getcwd()).absolute()
        # A short-lived process (the CLI): read-only queries may go through OpenSSH's
        # multiplexed master instead of opening (and importing) an asyncssh connection.
        self.one_shot = one_shot
        self.layout = layout or Layout.from_env()
        self._config: ResolvedConfig | None = None
        self._providers: dict[str, Provider] = {}
        self.pool = ConnectionPool()
        self._forward_owners: dict[str, ForwardOwner] = {}
        self._jobs: dict[str, JobBackend] = {}

    # -- config ------------------------------------------------------------------------------
    @property
    def config(self) -> ResolvedConfig:
        if self._config is None:
            self._config = load_project_config(self.cwd)
        return self._config

    def forget_config(self) -> None:
        """orch.toml changed on disk: the next use reads it anew (and may fail on it)."""
        self._config = None
        self._providers.clear()
        for jobs in self._jobs.values():  # their contexts hold the old config
            jobs.close()
        self._jobs.clear()

    def reload_config(self) -> ResolvedConfig:
        self.forget_config()
        return self.config

    @staticmethod
    def config_schema() -> dict[str, Any]:
        schema = OrchConfig.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = "orch.toml"
        return schema

    def config_init(self) -> tuple[Path, bool]:
        """Write a starter orch.toml into the project folder unless one exists there; returns
        (its path, whether it was written). Never overwrites."""
        from remote_config.loader import CONFIG_NAME, resolve
        from remote_config.starter import starter_toml
        from sidecar.config import find_config

        existing = find_config(self.cwd)
        if existing is not None:
            return existing, False
        path = self.cwd / CONFIG_NAME
        name = resolve(OrchConfig(), None, str(self.cwd)).project_name
        try:
            with path.open("x", encoding="utf-8") as file:
                file.write(starter_toml(name))
        except FileExistsError:
            return path, False
        self.forget_config()
        return path, True

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

    # -- what every area looks up per machine -----------------------------------------------
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
        from sidecar.machines import registry

        provider = registry.create(name, spec, self.layout, self.config.project_name)
        self._providers[name] = provider
        return provider

    @property
    def read_timeout_s(self) -> float:
        from sidecar.watch import read_timeout

        return read_timeout()

    async def ssh_target(self, machine: str | None = None) -> SSHTarget:
        return await self.provider(machine).ssh_target()

    def context(self, machine: str | None = None) -> MachineContext:
        """The narrow context services get for one machine (never the facade itself)."""
        from sidecar.context import MachineContext

        return MachineContext(
            self.config, self.layout, self.pool, self.provider(machine), self.one_shot
        )

    # -- lifetime ------------------------------------------------------------------------------
    async def close(self) -> None:
        for owner in self._forward_owners.values():
            await owner.stop()
        self._forward_owners.clear()
        await self.pool.close()
