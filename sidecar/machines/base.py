"""The machine provider interface every kind implements, and what a kind declares it can do.

A provider turns a machine into something orch can reach over SSH: `up` creates or starts it
(pinning its host key through a trusted channel), `down` stops it, `status` reports it
without side effects, and `ssh_target` says how to connect (directly, or through a proxy
command or jump host). Each provider class declares its `Capabilities`, which the CLI, the
language server and the extension ask instead of branching on kinds; the registry in
`registry.py` maps a kind to its provider class.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, Field

from remote_config.interruption import Interruption
from sidecar.errors import UsageError

if TYPE_CHECKING:
    from sidecar.layout import Layout

MachineState = Literal["running", "starting", "stopping", "stopped", "unknown", "not-created"]
Progress = Callable[[str], None]
Reach = Literal["direct", "proxy_command", "proxy_jump"]


class Capabilities(BaseModel):
    """What a machine kind can do; front ends show or hide actions from this, never from kind."""

    creates: bool = Field(default=False, description="`orch up` can create the machine.")
    can_stop: bool = Field(default=False, description="`orch down` powers the machine off.")
    can_terminate: bool = Field(default=False, description="The machine can be destroyed.")
    has_cost: bool = Field(default=False, description="The machine reports $/h and cost so far.")
    has_idle_stop: bool = Field(default=False, description="The machine can stop when idle.")
    reach: list[Reach] = Field(
        default_factory=lambda: list[Reach](["direct"]),
        description="How orch can reach the machine's sshd.",
    )


class MachineInfo(BaseModel):
    name: str
    kind: str
    state: MachineState
    address: str | None = None
    uptime_s: float | None = None
    pid: int | None = None
    detail: str | None = None
    # What the kind can do (filled in by the facade from the provider class), so front ends
    # offer Stop / Terminate / cost only where they mean something.
    capabilities: Capabilities = Field(default_factory=Capabilities)
    # Cloud machines (capabilities.has_cost): what it is, what it costs, what it cost so far
    # (None where it does not apply). EC2 fills instance_type/market, codespaces machine_type
    # and idle_timeout_minutes.
    instance_type: str | None = None
    market: Literal["on-demand", "spot"] | None = None
    machine_type: str | None = None
    idle_timeout_minutes: int | None = None
    price_per_hour: float | None = None  # USD
    cost_so_far: float | None = None  # USD since the machine last started
    price_note: str | None = None
    # A platform notice that the machine is being taken back (EC2: a spot instance's
    # 2-minute warning, read on the machine by `orch status`); None when there is none.
    interruption: Interruption | None = None


class CreatePlan(BaseModel):
    """What `up` is about to create and pay for, shown (and asked about) before it happens."""

    description: str
    price_per_hour: float | None = None
    ask: bool = Field(default=False, description="Confirm first (a GPU, or above the threshold).")
    reason: str | None = None


class TerminatePlan(BaseModel):
    """What terminating a machine would destroy and lose, for a confirmation that names it."""

    machine: str
    plan: str | None = Field(default=None, description="What is destroyed; None: nothing exists.")
    warnings: list[str] = Field(default_factory=list, description="What would be lost for good.")


class SSHTarget(BaseModel):
    """Everything needed to open an SSH connection that verifies the pinned host key."""

    alias: str  # the Host alias in the managed ssh config
    host: str
    port: int
    user: str
    identity_file: str
    host_key_alias: str  # the name the pinned key is stored under in orch's known_hosts
    known_hosts_file: str
    # Per-machine connection settings (orch.toml); today's values are the defaults.
    server_alive_interval: int = 15  # seconds between keepalives
    server_alive_count_max: int = 4  # missed keepalives before the peer counts as dead
    compression: bool = False  # worth it on slow links only
    # Reach the sshd through a command speaking SSH on stdin/stdout (a bastion's `ssh -W`,
    # `aws ssm start-session`, `gh codespace ssh --stdio`), or through a jump host
    # ([user@]host[:port]). At most one of them; OpenSSH's %h %p %r tokens are expanded.
    proxy_command: str | None = None
    proxy_jump: str | None = None


class Provider(abc.ABC):
    kind: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self, name: str, spec: Any, layout: Layout, project: str) -> None:
        self.name = name
        self.spec = spec
        self.layout = layout
        self.project = project

    @property
    def alias(self) -> str:
        """The machine's Host alias in the managed ssh config (stable while it is down)."""
        return f"orch-{self.project}-{self.name}"

    @property
    def state_dir(self) -> Path:
        """Where this machine's laptop-side state lives."""
        return self.layout.machine_dir(self.name)

    @abc.abstractmethod
    async def up(self, progress: Progress | None = None) -> MachineInfo:
        """Start (or create) the machine; a machine already running is left as it is."""

    @abc.abstractmethod
    async def down(self) -> MachineInfo:
        """Stop the machine; stopping a stopped machine is a no-op."""

    @abc.abstractmethod
    async def status(self) -> MachineInfo:
        """Report the machine's state without changing it (stale state is cleaned up)."""

    def long_job_warning(self, expected_s: float) -> str | None:
        """A warning when a job expected to run `expected_s` may be cut short by the machine
        (a platform idle timeout that job activity does not reset); None when it is fine."""
        return None

    async def terminate_warnings(self) -> list[str]:
        """What destroying the machine would lose (unpushed work), for a confirmation."""
        return []

    @abc.abstractmethod
    async def ssh_target(self) -> SSHTarget:
        """How to reach the running machine; raises MachineNotRunning when it is not up."""

    def job_setup(self, job: str) -> str:
        """sh the job's start script runs in the job's folder ($D) before it starts (EC2:
        the CloudWatch log shipper's config); empty for most kinds."""
        return ""

    async def archived_job_logs(self, job: str, tail: int | None = None) -> str | None:
        """The job's log from outside the machine (EC2: CloudWatch Logs), for when the
        machine is gone; None where the kind keeps none."""
        return None

    def interruption_check(self) -> str | None:
        """sh run on the running machine by the status read (and by its idle agent) that
        records and prints platform interruption notices (remote_config/interruption.py);
        None for kinds that are never taken back."""
        return None

    async def create_plan(self) -> CreatePlan | None:
        """What `up` would newly create and pay for; None when nothing new is paid for."""
        return None

    async def terminate_plan(self) -> str | None:
        """What `terminate` would destroy, in words (None: nothing exists to destroy)."""
        raise self._cannot_terminate()

    async def terminate(self) -> MachineInfo:
        """Destroy the machine and its disks (only kinds with `can_terminate`)."""
        raise self._cannot_terminate()

    def _cannot_terminate(self) -> UsageError:
        return UsageError(
            f"machines of kind {self.kind!r} cannot be deleted by orch",
            hint=f"`orch down {self.name}` stops it",
        )
