"""The types that cross orch's boundaries: what the facade returns and the wire carries.

The faces (the CLI and the language server) import result types from here and operations
from `sidecar.app`, nothing else of the sidecar (the layer contract in pyproject.toml checks
it). The TypeScript types of the extension (`extension/src/protocol.generated.ts`) are
generated from these models' JSON Schema (`python -m sidecar.wire`), and CI fails when the
committed file drifts from them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from remote_config.jobs import JobInfo
from sidecar.debug.service import DebugSession
from sidecar.idle.service import IdleStatus
from sidecar.jobs.fargate_queue import QueueStatus
from sidecar.machines.base import Capabilities, CreatePlan, MachineInfo, TerminatePlan
from sidecar.machines.ec2.models import FleetEntry
from sidecar.machines.inventory import MachineEntry, MachinesOverview
from sidecar.machines.overview import MachineList
from sidecar.machines.spend import CostStatus
from sidecar.profiling.service import ProfileRequest, ProfileResult
from sidecar.ssh.config_service import SshConfigResult
from sidecar.ssh.forwards import PortForwardInfo, PortsResult
from sidecar.sync.service import SyncConflict, SyncStatus


class DebugConfigResult(BaseModel):
    path: str
    configuration: dict[str, Any]


class ConfigProblemInfo(BaseModel):
    """One problem of orch.toml: where (1-based line and column, when known) and what."""

    file: str
    line: int | None = None
    column: int | None = None
    path: str = ""  # the dotted key, "" for a TOML syntax error
    message: str


class ConfigState(BaseModel):
    """The project's orch.toml as the sidecar last read it from disk."""

    file: str | None = None  # None: no orch.toml (defaults apply)
    problems: list[ConfigProblemInfo] = Field(default_factory=list)
    # The machines it names (`local` always): a change makes the editor list them again.
    machines: list[str] = Field(default_factory=list)


class ConfigInitResult(BaseModel):
    """`orch.config.init`: the starter orch.toml."""

    path: str
    created: bool  # False: an orch.toml was there already (left as it was)


class ErrorData(BaseModel):
    """`data` of the JSON-RPC error for an OrchError (docs/protocol.md)."""

    kind: str  # the error's class name: MachineNotRunning, ConfigFileError, …
    hint: str | None = None  # what to run in a terminal
    action: str | None = None  # what a button can do instead (sidecar.errors.ACTIONS)
    target: str | None = None  # what the action acts on (a machine, a file)
    problems: list[ConfigProblemInfo] | None = None  # ConfigFileError: each problem


class OrchStatus(BaseModel):
    """Everything the status bar and `orch status` show (also the `orch/status` notification)."""

    machine: MachineInfo
    jobs: list[JobInfo] = Field(default_factory=list)
    sync: SyncStatus = Field(default_factory=SyncStatus)
    ports: list[PortForwardInfo] = Field(default_factory=list)
    queues: list[QueueStatus] = Field(default_factory=list)
    # The idle agent's latest decision ("idle 25 min · stops in 5 min"); None: no agent.
    idle: IdleStatus | None = None
    # Spend today across every machine orch saw running, and the daily budget ([cost]).
    cost: CostStatus | None = None
    config: ConfigState = Field(default_factory=ConfigState)


__all__ = [
    "Capabilities",
    "ConfigInitResult",
    "ConfigProblemInfo",
    "ConfigState",
    "CostStatus",
    "CreatePlan",
    "DebugConfigResult",
    "DebugSession",
    "ErrorData",
    "FleetEntry",
    "IdleStatus",
    "JobInfo",
    "MachineEntry",
    "MachineInfo",
    "MachineList",
    "MachinesOverview",
    "OrchStatus",
    "PortForwardInfo",
    "PortsResult",
    "ProfileRequest",
    "ProfileResult",
    "QueueStatus",
    "SshConfigResult",
    "SyncConflict",
    "SyncStatus",
    "TerminatePlan",
]
