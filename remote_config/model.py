"""The `orch.toml` project model (pydantic v2).

Every section is a strict model (`extra="forbid"`) so that a misspelt key is reported with a
"did you mean" instead of being silently ignored, and types are strict too (`strict=True`):
`true` is not the port 1 and `"yes"` is not a boolean. Defaults make an absent `orch.toml` a valid
project that uses the embedded `local` machine.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remote_config import ec2_ami
from remote_config.idle import parse_duration
from remote_config.interruption import DEFAULT_METADATA_URL, check_metadata_url

LOCATED_RE = re.compile(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)?): ")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, strict=True)


class Connection(Strict):
    """Per-machine SSH connection settings (OpenSSH's and asyncssh's keepalive, compression)."""

    server_alive_interval: Annotated[int, Field(ge=1, le=3600)] = Field(
        default=15, description="Seconds between keepalives (ServerAliveInterval)."
    )
    server_alive_count_max: Annotated[int, Field(ge=1, le=100)] = Field(
        default=4, description="Missed keepalives before the connection counts as dead."
    )
    compression: bool = Field(default=False, description="Compress traffic (slow links).")


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


def _check_one_line(value: str | None) -> str | None:
    """A proxy command: one non-empty line (it goes into ssh_config, which has no quoting)."""
    if value is not None and (not value.strip() or any(c in value for c in "\n\r\x00")):
        raise ValueError("must be one non-empty line")
    return value


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


class IdleSettings(Connection):
    """When the machine stops itself (see docs/idle.md); every machine kind has these."""

    idle_stop: str | None = Field(
        default=None,
        description="Stop after this long idle ('30m', '1h'); 'off' never. Default: '30m' "
        "for machines that cost money and can stop themselves, off for the others.",
    )
    ttl: str | None = Field(
        default=None,
        description="A hard lifetime ('24h') after which the machine stops even if busy "
        "(it waits for running jobs unless ttl_hard); default: none.",
    )
    ttl_hard: bool = Field(
        default=False, description="At the end of `ttl`, stop even under running jobs."
    )
    stop_action: Literal["stop", "terminate"] = Field(
        default="stop",
        description="What an idle or TTL stop does: 'stop' (keep the disk) or 'terminate'.",
    )

    @field_validator("idle_stop", "ttl", mode="before")
    @classmethod
    def _false_is_off(cls, value: object) -> object:
        if value is False:
            return "off"
        if value is not None and not isinstance(value, str):
            raise ValueError("write a duration in quotes, e.g. '30m' or '24h', or 'off'")
        return value

    @field_validator("idle_stop")
    @classmethod
    def _idle_stop(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("off", "never"):
            return None if value is None else "off"
        parse_duration(value)
        return value.strip().lower()

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: str | None) -> str | None:
        if value is None or value.strip().lower() in ("off", "never"):
            return None
        parse_duration(value)
        return value.strip().lower()


class LocalMachine(IdleSettings):
    """The embedded SSH server on 127.0.0.1: every feature works offline on one computer."""

    kind: Literal["local"] = "local"
    port: Port | None = Field(
        default=None, description="Fixed port; by default a free port chosen once and kept."
    )
    price_per_hour: Annotated[float, Field(ge=0, le=10_000)] | None = Field(
        default=None,
        description="Count this machine in the cost guard at this many USD per hour while its "
        "server runs (e.g. to try the daily budget); default: not counted.",
    )


class SSHMachine(IdleSettings):
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
    proxy_jump: str | None = Field(
        default=None,
        description="Reach the host through this jump host ('[user@]bastion[:port]'), as "
        "OpenSSH's ProxyJump; the bastion's key is checked against your own known_hosts.",
    )
    proxy_command: str | None = Field(
        default=None,
        description="Reach the host through this command, which speaks SSH on stdin/stdout "
        "(OpenSSH's ProxyCommand; %h, %p and %r are the host, port and user).",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or value.startswith("-"):
            raise ValueError("must be a host name or address without spaces or a leading '-'")
        return value

    @field_validator("proxy_jump")
    @classmethod
    def _jump(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^([A-Za-z0-9._-]+@)?[A-Za-z0-9._:\[\]-]+$", value):
            raise ValueError("must look like '[user@]host[:port]'")
        if value is not None and value.startswith("-"):
            raise ValueError("must not start with '-'")
        return value

    @field_validator("proxy_command")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        return _check_one_line(value)

    @model_validator(mode="after")
    def _one_proxy(self) -> SSHMachine:
        if self.proxy_jump and self.proxy_command:
            raise ValueError("set proxy_jump or proxy_command, not both")
        return self


AMI_RE = r"^(ami-[0-9a-f]{8,17}|ssm:/[\w./-]+)$"


class EC2Machine(IdleSettings):
    """An AWS EC2 instance orch creates, starts, stops and terminates through boto3."""

    kind: Literal["ec2"]
    region: str = Field(default="us-east-1", description="AWS region, e.g. 'ap-northeast-1'.")
    availability_zone: str | None = Field(
        default=None, description="Zone to launch in; default: the one AWS picks."
    )
    instance_type: str = "t3.large"
    ami: str | None = Field(
        default=None,
        description="An image by name ('al2023', 'ubuntu' (24.04), 'ubuntu-22.04', 'dlami', "
        "'dlami-ubuntu': the latest, from AWS's public SSM parameters), an AMI id ('ami-…') "
        "or a public SSM parameter ('ssm:/aws/service/…'); default: 'dlami' (a Deep Learning "
        "AMI with the NVIDIA driver) for GPU types, else 'al2023'.",
    )
    user: str = Field(
        default="ec2-user",
        description="Login user; default: the image's own ('ubuntu' on Ubuntu images, "
        "else 'ec2-user').",
    )
    volume_gb: Annotated[int, Field(ge=8, le=16384)] = 50
    volume_type: Literal["gp3", "gp2", "io1", "io2"] = "gp3"
    subnet_id: str | None = Field(default=None, description="Default: the default VPC's.")
    security_group_ids: list[str] = Field(
        default_factory=list, description="Default: a group orch creates for the machine."
    )
    reach: Literal["public-ip", "ssm"] = Field(
        default="public-ip",
        description="'public-ip': SSH to the public address (port 22 open to ssh_from only); "
        "'ssm': through AWS Session Manager, no inbound port at all.",
    )
    ssh_from: str | None = Field(
        default=None,
        description="The one address allowed to SSH in (public-ip reach); default: this "
        "computer's public address as https://checkip.amazonaws.com sees it.",
    )
    proxy_command: str | None = Field(
        default=None,
        description="Reach the instance through this command instead (a bastion's "
        "'ssh -W %h:%p bastion'); %h is the instance id with reach = 'ssm', else its address.",
    )
    spot: bool = False
    spot_max_price: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Highest $/h for spot; default: the on-demand price."
    )
    fallback: Literal["none", "on-demand"] = Field(
        default="none",
        description="With spot: launch on demand when no zone of the region has spot capacity.",
    )
    instance_profile: str | None = Field(
        default=None, description="IAM instance profile name (needed for reach = 'ssm')."
    )
    aws_profile: str | None = Field(
        default=None, description="Named AWS profile; default: the usual credential chain."
    )
    confirm_above_per_hour: Annotated[float, Field(ge=0)] = Field(
        default=1.0,
        description="`orch up` asks before creating an instance above this $/h (or with a "
        "GPU, or of unknown price); --yes skips the question.",
    )
    idle_stop_minutes: Annotated[int, Field(ge=0)] = 30
    tags: dict[str, str] = Field(default_factory=dict)
    cloudwatch_logs: bool = Field(
        default=False,
        description="Ship each job's run.log to CloudWatch Logs (so `orch logs` reads it after "
        "the machine is gone).",
    )
    log_group: str | None = Field(
        default=None, description="The CloudWatch log group; default: '/orch/<project>'."
    )
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 180, 365, 731, 1827, 3653] = Field(
        default=30, description="How long CloudWatch keeps the job logs."
    )
    logs_endpoint_url: str | None = Field(
        default=None,
        description="The CloudWatch Logs endpoint as the machine reaches it; default: the "
        "region's public one (set it for a VPC endpoint).",
    )
    metadata_url: str = Field(
        default=DEFAULT_METADATA_URL,
        description="The instance metadata service as seen on the machine (IMDSv2), where "
        "`orch status` and the idle agent read a spot interruption notice; change it only "
        "for a metadata proxy or a stand-in.",
    )

    @field_validator("metadata_url")
    @classmethod
    def _metadata_url(cls, value: str) -> str:
        return check_metadata_url(value)

    @field_validator("logs_endpoint_url")
    @classmethod
    def _logs_endpoint(cls, value: str | None) -> str | None:
        return None if value is None else check_metadata_url(value)

    @field_validator("log_group")
    @classmethod
    def _log_group(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z0-9_./#-]{1,512}$", value):
            raise ValueError("a log group name is 1-512 of letters, digits and _ . / # -")
        return value

    @field_validator("ami")
    @classmethod
    def _ami(cls, value: str | None) -> str | None:
        named = value in ec2_ami.IMAGES
        if value is not None and not named and not re.match(AMI_RE, value):
            names = ", ".join(repr(n) for n in ec2_ami.IMAGES)
            raise ValueError(f"must be {names}, an AMI id ('ami-0123…') or 'ssm:/aws/service/…'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _image_user(cls, data: Any) -> Any:
        """The login user follows the image unless set ('ubuntu' on Ubuntu images)."""
        if isinstance(data, dict) and "user" not in data:
            ami, itype = data.get("ami"), data.get("instance_type", "t3.large")
            if (ami is None or isinstance(ami, str)) and isinstance(itype, str):
                return {**data, "user": ec2_ami.login_user(ami, itype)}
        return data

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.match(r"^[a-z]{2}(-[a-z]+)+-\d$", value):
            raise ValueError("must be an AWS region name such as 'us-east-1'")
        return value

    @field_validator("proxy_command")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        return _check_one_line(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.startswith(("orch:", "aws:")):
                raise ValueError(f"tag {key!r}: 'orch:' and 'aws:' tags are reserved")
        return value


Geo = Literal["EuropeWest", "SoutheastAsia", "UsEast", "UsWest"]


class CodespacesMachine(IdleSettings):
    """A GitHub codespace, made from a repository's dev container (the default cloud)."""

    kind: Literal["codespaces"]
    repository: str = Field(description="owner/name of the repository the codespace is made from.")
    branch: str | None = Field(default=None, description="Git ref; default: the default branch.")
    machine_type: str = Field(
        default="basicLinux32gb",
        description="Machine type name (`orch up` lists the ones the repository allows).",
    )
    idle_timeout_minutes: Annotated[int, Field(ge=5, le=240)] = Field(
        default=30, description="GitHub suspends the codespace after this much idle time."
    )
    retention_period_minutes: Annotated[int, Field(ge=0, le=43200)] | None = Field(
        default=None,
        description="Delete a stopped codespace after this long (GitHub's default: 30 days).",
    )
    devcontainer_path: str | None = Field(
        default=None, description="e.g. '.devcontainer/devcontainer.json'; default: GitHub's pick."
    )
    display_name: str | None = Field(
        default=None,
        description="The name orch finds the codespace by; default 'orch <project> <machine>'.",
        max_length=48,
    )
    geo: Geo | None = Field(default=None, description="Region; default: nearest to you.")

    @field_validator("repository")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", value):
            raise ValueError("must look like 'owner/name'")
        return value

    @field_validator("devcontainer_path")
    @classmethod
    def _devcontainer(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError("must be a path inside the repository, like '.devcontainer/x.json'")
        return value


Machine = Annotated[
    LocalMachine | SSHMachine | EC2Machine | CodespacesMachine, Field(discriminator="kind")
]


class FargateBackend(Strict):
    """Jobs as ECS Fargate tasks (`orch run NAME --on BACKEND`); see docs/fargate.md."""

    kind: Literal["fargate"]
    region: str = "us-east-1"
    cluster: str | None = Field(default=None, description="ECS cluster; default 'orch-<project>'.")
    subnets: list[str] = Field(default_factory=list, description="awsvpc subnets (required).")
    security_groups: list[str] = Field(
        default_factory=list, description="awsvpc security groups (required; egress to S3/ECR)."
    )
    assign_public_ip: bool = Field(
        default=True, description="Public IP (needed to pull images and reach S3 without NAT)."
    )
    cpu: Literal[256, 512, 1024, 2048, 4096, 8192, 16384] = Field(
        default=1024, description="CPU units (1024 = 1 vCPU)."
    )
    memory: Annotated[int, Field(ge=512, le=122880)] = Field(default=2048, description="MiB.")
    ephemeral_storage_gb: Annotated[int, Field(ge=20, le=200)] = 21
    architecture: Literal["X86_64", "ARM64"] = "X86_64"
    image: str = Field(
        default="public.ecr.aws/docker/library/python:3.12-slim",
        description="Any image with sh, tar and python3 or curl.",
    )
    capacity_provider: Literal["FARGATE", "FARGATE_SPOT"] = "FARGATE"
    env: dict[str, str] = Field(default_factory=dict, description="Environment of every task.")
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="NAME = ARN of an SSM parameter or a Secrets Manager secret.",
    )
    log_group: str | None = Field(default=None, description="Default '/orch/<project>'.")
    log_retention_days: Annotated[int, Field(ge=1)] = 30
    bucket: str | None = Field(
        default=None,
        description="S3 bucket for code and outputs; default 'orch-<project>-<account>'.",
    )
    execution_role_arn: str | None = Field(default=None, description="Default: the one init made.")
    task_role_arn: str | None = Field(default=None, description="Default: the one init made.")
    min_tasks: Annotated[int, Field(ge=0)] = 0
    max_tasks: Annotated[int, Field(ge=1, le=1000)] = 10
    messages_per_task: Annotated[int, Field(ge=1)] = Field(
        default=1, description="Queue mode: the backlog per task the scaling targets."
    )
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=3, description="Queue mode: receives before an item goes to the dead-letter queue."
    )

    @field_validator("env", "secrets")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"environment variable name {key!r} is not valid")
        return value

    @field_validator("secrets")
    @classmethod
    def _arns(cls, value: dict[str, str]) -> dict[str, str]:
        for key, arn in value.items():
            if not re.match(r"^arn:aws[a-z-]*:(ssm|secretsmanager):", arn):
                raise ValueError(f"secret {key}: {arn!r} is not an SSM or Secrets Manager ARN")
        return value

    @model_validator(mode="after")
    def _fargate_size(self) -> FargateBackend:
        from remote_config.fargate import check_size

        problem = check_size(self.cpu, self.memory)
        if problem:
            raise ValueError(problem)
        if self.min_tasks > self.max_tasks:
            raise ValueError("min_tasks must not exceed max_tasks")
        return self


# One kind for now; a second kind makes this a discriminated union on `kind`.
Backend = FargateBackend


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


class CostSection(Strict):
    """The cost guard (docs/idle.md#cost): what running machines may spend per day."""

    daily_budget: Annotated[float, Field(gt=0)] | None = Field(
        default=None,
        description="Warn (status, status bar, `orch machines`) once machines have cost this "
        "many USD today (local time); default: no budget.",
    )


class PortForward(Strict):
    local: Port = Field(description="Port on this computer (where a reverse forward connects).")
    remote: Port | None = Field(default=None, description="Remote port; defaults to `local`.")
    remote_host: str = "127.0.0.1"
    machine: str | None = Field(default=None, description="Only on this machine; default all.")
    reverse: bool = Field(
        default=False,
        description="The machine's 127.0.0.1:remote reaches this computer's 127.0.0.1:local "
        "(RemoteForward), instead of the other way round.",
    )

    @field_validator("remote_host")
    @classmethod
    def _remote_host(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or value.startswith("-") or ":" in value:
            raise ValueError("must be a host name or IPv4 address without spaces")
        return value

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
    backends: dict[str, Backend] = Field(
        default_factory=dict, description="Job backends besides tmux on a machine."
    )
    sync: SyncSection = Field(default_factory=SyncSection)
    ports: list[PortForward] = Field(default_factory=list)
    jobs: JobsSection = Field(default_factory=JobsSection)
    debug: DebugSection = Field(default_factory=DebugSection)
    gpu: GpuSection = Field(default_factory=GpuSection)
    cost: CostSection = Field(default_factory=CostSection)

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

    @field_validator("backends")
    @classmethod
    def _backend_names(cls, value: dict[str, Backend]) -> dict[str, Backend]:
        for name in value:
            if not NAME_RE.match(name):
                raise ValueError(
                    f"backend name {name!r}: use letters, digits, '-' and '_', "
                    "starting alphanumeric"
                )
        return value

    @model_validator(mode="before")
    @classmethod
    def _local_kind(cls, data: Any) -> Any:
        """`[machines.local]` may leave out `kind = "local"` (docs/local-machine.md)."""
        if isinstance(data, dict) and isinstance(data.get("machines"), dict):
            local = data["machines"].get("local")
            if isinstance(local, dict) and "kind" not in local:
                machines = {**data["machines"], "local": {**local, "kind": "local"}}
                data = {**data, "machines": machines}
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> OrchConfig:
        # Messages start with the dotted path of the field at fault (`LOCATED_RE`), so the
        # loader can point at its line.
        names = set(self.machine_names())
        if self.project.default_machine not in names:
            raise ValueError(
                f"project.default_machine: {self.project.default_machine!r} is not a machine "
                f"(known: {', '.join(sorted(names))})"
            )
        used: set[tuple[bool, int, str | None]] = set()
        for i, fwd in enumerate(self.ports):
            if fwd.machine is not None and fwd.machine not in names:
                raise ValueError(f"ports[{i}].machine: machine {fwd.machine!r} is not defined")
            key = (fwd.reverse, fwd.remote_port if fwd.reverse else fwd.local, fwd.machine)
            if key in used:
                what = "remote port" if fwd.reverse else "local port"
                raise ValueError(f"ports[{i}]: {what} {key[1]} is forwarded twice")
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
