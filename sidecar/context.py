"""The narrow context a service receives about one machine of one project.

Services (sync, jobs, debug, profiling) get a `MachineContext`, never the Orchestrator
facade: the project config, orch's state layout, the shared connection pool, the machine's
provider, and the few derived things every service needs (the SSH target, the managed ssh
config and an OpenSSH argv through it). The facade builds one per machine and is the only
place that composes services; a service importing `sidecar.app` fails the layer contract
(`[tool.importlinter]` in pyproject.toml).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from remote_config.loader import ResolvedConfig
from remote_config.ssh_config import LocalForwardSpec, ssh_argv
from sidecar.layout import Layout
from sidecar.machines.base import Provider, SSHTarget
from sidecar.ssh.pool import ConnectionPool


@dataclass
class MachineContext:
    config: ResolvedConfig
    layout: Layout
    pool: ConnectionPool
    provider: Provider
    # A short-lived process (the CLI): read-only queries may go through OpenSSH's
    # multiplexed master instead of opening (and importing) an asyncssh connection.
    one_shot: bool = False

    @property
    def machine(self) -> str:
        return self.provider.name

    @property
    def alias(self) -> str:
        return self.provider.alias

    async def target(self) -> SSHTarget:
        return await self.provider.ssh_target()

    def forwards(self) -> tuple[LocalForwardSpec, ...]:
        """The `[[ports]]` forwards orch.toml declares for this machine."""
        return tuple(
            LocalForwardSpec(f.local, f.remote_host, f.remote_port)
            for f in self.config.config.ports
            if f.machine in (None, self.machine)
        )

    async def write_ssh_config(self) -> Path:
        """Render the machine's Host block into orch's managed ssh config."""
        from sidecar.ssh.managed import host_entry, write_managed_config

        target = await self.target()
        write_managed_config(self.layout, [host_entry(self.layout, target, self.forwards())])
        return self.layout.ssh_config

    async def ssh_argv(self, command: list[str] | None = None, *, tty: bool = False) -> list[str]:
        """argv running OpenSSH to the machine through the managed config."""
        target = await self.target()
        await self.write_ssh_config()
        remote = " ".join(command) if command else None
        return ssh_argv(str(self.layout.ssh_config), target.alias, remote, tty=tty)

    async def remote_text(self, command: str) -> str:
        """stdout of a read-only sh command on the machine (the CLI: through OpenSSH's
        master, with no asyncssh import; the language server: the pooled connection)."""
        if self.one_shot:
            import asyncio
            import shlex

            argv = await self.ssh_argv(["sh", "-c", shlex.quote(command)])
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
            )
            try:
                out, _ = await proc.communicate()
            except asyncio.CancelledError:  # a bounded read given up: leave no ssh behind
                proc.kill()
                raise
            return out.decode(errors="replace")
        result = await self.pool.run(await self.target(), command)
        return result.stdout

    async def close(self) -> None:
        await self.pool.close()


def open_context(cwd: Path, machine: str | None = None) -> MachineContext:
    """A context of its own for a process that serves one machine (the sync process)."""
    from sidecar.config import load_project_config
    from sidecar.errors import NotFound
    from sidecar.machines import registry

    config = load_project_config(cwd)
    name = machine or config.config.project.default_machine
    try:
        _, spec = config.machine(name)
    except KeyError:
        known = ", ".join(config.config.machine_names())
        raise NotFound(f"unknown machine {name!r}", hint=f"known machines: {known}") from None
    layout = Layout.from_env()
    provider = registry.create(name, spec, layout, config.project_name)
    return MachineContext(config, layout, ConnectionPool(), provider)
