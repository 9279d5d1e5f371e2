"""The machine provider interface every kind implements (local, ssh, ec2, codespaces).

A provider turns a machine into something orch can reach over SSH: `up` creates or starts it
(pinning its host key through a trusted channel), `down` stops it, `status` reports it
without side effects, and `ssh_target` says how to connect. Cloud providers add cost and idle
handling on top; nothing else in orch needs to know which kind it talks to.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel

MachineState = Literal["running", "starting", "stopping", "stopped", "unknown", "not-created"]
Progress = Callable[[str], None]


class MachineInfo(BaseModel):
    name: str
    kind: str
    state: MachineState
    address: str | None = None
    uptime_s: float | None = None
    pid: int | None = None
    detail: str | None = None


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


class Provider(abc.ABC):
    kind: str

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    async def up(self, progress: Progress | None = None) -> MachineInfo:
        """Start (or create) the machine; a machine already running is left as it is."""

    @abc.abstractmethod
    async def down(self) -> MachineInfo:
        """Stop the machine; stopping a stopped machine is a no-op."""

    @abc.abstractmethod
    async def status(self) -> MachineInfo:
        """Report the machine's state without changing it (stale state is cleaned up)."""

    @abc.abstractmethod
    async def ssh_target(self) -> SSHTarget:
        """How to reach the running machine; raises MachineNotRunning when it is not up."""
