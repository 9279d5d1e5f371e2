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
from sidecar.machines.base import Capabilities, CreatePlan, MachineInfo
from sidecar.machines.ec2.models import FleetEntry
from sidecar.profiling.service import ProfileRequest, ProfileResult
from sidecar.ssh.config_service import SshConfigResult
from sidecar.ssh.forwards import PortForwardInfo, PortsResult
from sidecar.sync.service import SyncConflict, SyncStatus


class DebugConfigResult(BaseModel):
    path: str
    configuration: dict[str, Any]


class OrchStatus(BaseModel):
    """Everything the status bar and `orch status` show (also the `orch/status` notification)."""

    machine: MachineInfo
    jobs: list[JobInfo] = Field(default_factory=list)
    sync: SyncStatus = Field(default_factory=SyncStatus)
    ports: list[PortForwardInfo] = Field(default_factory=list)
    # The idle agent's latest decision ("idle 25 min · stops in 5 min"); None: no agent.
    idle: IdleStatus | None = None


__all__ = [
    "Capabilities",
    "CreatePlan",
    "DebugConfigResult",
    "DebugSession",
    "FleetEntry",
    "IdleStatus",
    "JobInfo",
    "MachineInfo",
    "OrchStatus",
    "PortForwardInfo",
    "PortsResult",
    "ProfileRequest",
    "ProfileResult",
    "SshConfigResult",
    "SyncConflict",
    "SyncStatus",
]
