"""The `orch.toml` project model (pydantic v2).

Every section is a strict model (`extra="forbid"`) so that a misspelt key is reported with a
"did you mean" instead of being silently ignored. Defaults make an absent `orch.toml` a valid
project that uses the embedded `local` machine.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _check_remote_path(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if not (value.startswith("/") or value == "~" or value.startswith("~/")):
        raise ValueError("must be absolute or start with '~/' (the remote home)")
    if ".." in value.split("/"):
        raise ValueError("must not contain '..'")
    if "\n" in value or "\x00" in value:
        raise ValueError("must not contain newlines or NUL bytes")
    return value.rstrip("/") or "/"


class ProjectSection(Strict):
    name: str | None = Field(
        default=None, description="Project name; defaults to the folder holding orch.toml."
    )
    default_machine: str = Field(default="local", description="Machine used when none is named.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_RE.match(value):
            raise ValueError("use letters, digits, '-' and '_' (at most 63), starting alphanumeric")
        return value


class LocalMachine(Strict):
    """The embedded SSH server on 127.0.0.1: every feature works offline on one computer."""

    kind: Literal["local"] = "local"
    port: Port | None = Field(
        default=None, description="Fixed port; by default a free port chosen once and kept."
    )


class SSHMachine(Strict):
    """An existing host reachable over SSH (bring your own server)."""

    kind: Literal["ssh"]
    host: str = Field(description="Host name or address.")
    port: Port = 22
    user: str | None = Field(default=None, description="Remote user; defaults to the local one.")
    identity_file: str | None = Field(default=None, description="Private key; default orch's key.")
    host_key: str | None = Field(
        default=None,
        description="The host's public key ('ssh-ed25519 AAAA…'), pinned into orch's known_hosts.",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or value.startswith("-"):
            raise ValueError("must be a host name or address without spaces or a leading '-'")
        return value


class EC2Machine(Strict):
    """An AWS EC2 instance managed through boto3."""

    kind: Literal["ec2"]
    region: str = "us-east-1"
    instance_type: str = "t3.large"
    ami: str | None = Field(default=None, description="AMI id; default: latest Ubuntu LTS.")
    spot: bool = False
    user: str = "ubuntu"
    volume_gb: Annotated[int, Field(ge=8, le=16384)] = 50
    subnet_id: str | None = None
    security_group_ids: list[str] = Field(default_factory=list)
    idle_stop_minutes: Annotated[int, Field(ge=0)] = 30
    tags: dict[str, str] = Field(default_factory=dict)


class CodespacesMachine(Strict):
    """A GitHub Codespace (the default cloud)."""

    kind: Literal["codespaces"]
    repository: str = Field(description="owner/name of the repository the codespace is made from.")
    branch: str | None = None
    machine_type: str = "basicLinux32gb"
    idle_timeout_minutes: Annotated[int, Field(ge=5, le=240)] = 30
    devcontainer_path: str | None = None

    @field_validator("repository")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", value):
            raise ValueError("must look like 'owner/name'")
        return value


Machine = Annotated[
    LocalMachine | SSHMachine | EC2Machine | CodespacesMachine, Field(discriminator="kind")
]


class SyncSection(Strict):
    local_dir: str = Field(default=".", description="Relative to the folder holding orch.toml.")
    remote_dir: str | None = Field(
        default=None, description="Remote folder; default '~/work/<project name>'."
    )
    exclude: list[str] = Field(default_factory=list, description="Extra gitignore-style patterns.")
    use_gitignore: bool = True
    default_excludes: bool = Field(
        default=True, description="Ignore .git, node_modules, __pycache__, .venv and data/."
    )
    debounce_ms: Annotated[int, Field(ge=0, le=10_000)] = 30

    @field_validator("remote_dir")
    @classmethod
    def _remote(cls, value: str | None) -> str | None:
        return None if value is None else _check_remote_path(value)

    @field_validator("local_dir")
    @classmethod
    def _local(cls, value: str) -> str:
        if not value or "\x00" in value:
            raise ValueError("must be a folder path")
        return value


class PortForward(Strict):
    local: Port
    remote: Port | None = Field(default=None, description="Remote port; defaults to `local`.")
    remote_host: str = "127.0.0.1"
    machine: str | None = Field(default=None, description="Only on this machine; default all.")

    @property
    def remote_port(self) -> int:
        return self.remote if self.remote is not None else self.local


class JobsSection(Strict):
    env: dict[str, str] = Field(default_factory=dict, description="Environment for every job.")
    log_retention_days: Annotated[int, Field(ge=1)] = 30
    log_max_mb: Annotated[int, Field(ge=1)] = 200
    stop_grace_seconds: Annotated[float, Field(ge=0, le=600)] = 10.0
    snapshot: bool = Field(
        default=True,
        description="Start jobs from a snapshot of the synced tree (later syncs never change "
        "their code); off: every job runs in the live project folder.",
    )
    live: list[str] = Field(
        default_factory=list,
        description="Job names (or glob patterns) that run in the live project folder, so "
        "each save reaches them (a dev server that reloads), whatever `snapshot` says.",
    )

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"environment variable name {key!r} is not valid")
        return value


class DebugSection(Strict):
    remote_port: Port = 5678
    python: str = "python3"
    just_my_code: bool = False


class GpuSection(Strict):
    port: Port = 55441
    streams: Annotated[int, Field(ge=1, le=64)] = 4
    batch_size: Annotated[int, Field(ge=1, le=256)] = 4
    memory_fraction: Annotated[float, Field(gt=0, le=1)] = 0.9
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"
    sam2_checkpoint: str | None = None
    birefnet_checkpoint: str | None = None
    python: str = "python3"


class OrchConfig(Strict):
    project: ProjectSection = Field(default_factory=ProjectSection)
    machines: dict[str, Machine] = Field(default_factory=dict)
    sync: SyncSection = Field(default_factory=SyncSection)
    ports: list[PortForward] = Field(default_factory=list)
    jobs: JobsSection = Field(default_factory=JobsSection)
    debug: DebugSection = Field(default_factory=DebugSection)
    gpu: GpuSection = Field(default_factory=GpuSection)

    @field_validator("machines")
    @classmethod
    def _machine_names(cls, value: dict[str, Machine]) -> dict[str, Machine]:
        seen: dict[str, str] = {}
        for name in value:
            if not NAME_RE.match(name):
                raise ValueError(
                    f"machine name {name!r}: use letters, digits, '-' and '_', "
                    "starting alphanumeric"
                )
            folded = name.lower()
            if folded in seen:
                raise ValueError(f"duplicate machine names {seen[folded]!r} and {name!r}")
            seen[folded] = name
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> OrchConfig:
        names = set(self.machine_names())
        if self.project.default_machine not in names:
            raise ValueError(
                f"project.default_machine {self.project.default_machine!r} is not a machine "
                f"(known: {', '.join(sorted(names))})"
            )
        used: set[tuple[int, str | None]] = set()
        for fwd in self.ports:
            if fwd.machine is not None and fwd.machine not in names:
                raise ValueError(f"ports: machine {fwd.machine!r} is not defined")
            key = (fwd.local, fwd.machine)
            if key in used:
                raise ValueError(f"ports: local port {fwd.local} is forwarded twice")
            used.add(key)
        return self

    def machine_names(self) -> list[str]:
        return sorted({"local", *self.machines})

    def machine(self, name: str | None = None) -> tuple[str, Machine]:
        """The named machine (or the default one); `local` exists even when not declared."""
        chosen = name or self.project.default_machine
        if chosen in self.machines:
            return chosen, self.machines[chosen]
        if chosen == "local":
            return "local", LocalMachine()
        raise KeyError(chosen)
