"""The job-backend interface: what runs a named job, and what it can do.

A backend runs, lists, streams, stops and removes named jobs. The first one is tmux on a
machine (`tmux.py`: state on the machine, logs in `~/logs/NAME/run.log`); a backend with no
shell on a machine (a container task on ECS Fargate) fits the same shape: attach is a
declared capability, logs may come from a log service, and the code a job runs is shipped
by the backend (`prepare_code`: a snapshot on the machine, an archive in object storage).
Every JobInfo a backend returns names the backend in `JobInfo.backend`.

Adding a backend: a module with a `JobBackend` subclass, one line in `_BACKENDS`, its config
model in `remote_config/model.py` (docs/development.md has the checklist).
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, Field

from remote_config.jobs import JobInfo
from sidecar.errors import OrchError

if TYPE_CHECKING:
    from sidecar.context import MachineContext


class BackendCapabilities(BaseModel):
    attach: bool = Field(default=False, description="An interactive session can be attached.")
    debug: bool = Field(default=False, description="Jobs can run under debugpy, attachable.")
    live_code: bool = Field(
        default=False, description="Jobs can run in the live synced folder (not a snapshot)."
    )
    logs: Literal["machine", "service"] = Field(
        default="machine", description="Where logs are read: the machine, or a log service."
    )


class JobBackend(abc.ABC):
    """Jobs of one project on one execution target (a machine, a cluster)."""

    kind: ClassVar[str]
    capabilities: ClassVar[BackendCapabilities]

    def __init__(self, ctx: MachineContext, name: str | None = None) -> None:
        """`ctx`: the machine whose synced tree jobs run from; `name`: the configured backend
        (`[backends.NAME]`), for backends that are configured by name."""
        self.ctx = ctx

    @abc.abstractmethod
    async def prepare_code(self, snapshot: bool | None, name: str = "") -> str | None:
        """Ship the project's synced code for a new job; returns where the job finds it (None:
        the live project folder). `snapshot=None` follows the project's settings for job
        `name` (`[jobs] snapshot`, `[jobs] live`)."""

    @abc.abstractmethod
    async def run(
        self,
        name: str,
        command: str | Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        replace: bool = False,
        workdir: str | None = None,
    ) -> JobInfo:
        """Start job `name` (UsageError for a bad name/env, Conflict if it already runs)."""

    @abc.abstractmethod
    async def restart(self, name: str, workdir: str | None = None) -> JobInfo: ...

    @abc.abstractmethod
    async def status(self) -> list[JobInfo]:
        """Every job this backend knows of, each with `backend` set."""

    async def info(self, name: str) -> JobInfo:
        from sidecar.errors import NotFound

        for job in await self.status():
            if job.name == name:
                return job
        raise NotFound(f"no job named {name!r}", hint="list the jobs with: orch status")

    @abc.abstractmethod
    async def stop(self, name: str) -> JobInfo: ...

    @abc.abstractmethod
    async def rm(self, name: str, purge: bool = False) -> None: ...

    @abc.abstractmethod
    def stream(
        self,
        name: str,
        *,
        tail: int | None = None,
        follow: bool = False,
        offset: int | None = None,
    ) -> AsyncIterator[str]:
        """The job's output as text chunks; with `follow`, until the job ends. A backend
        whose chunks carry an `offset` (tmux: `jobs.follow.LogText`) resumes at `offset`;
        the others never hand one out and ignore it."""

    async def logs(self, name: str, tail: int | None = None) -> str:
        return "".join([chunk async for chunk in self.stream(name, tail=tail)])

    def close(self) -> None:
        """Let go of what the backend keeps open between calls (a remote shell)."""
        return None

    async def attach_argv(self, name: str) -> list[str]:
        """argv of an interactive session on the job (only where `capabilities.attach`)."""
        raise OrchError(
            f"jobs on the {self.kind} backend have no session to attach to",
            hint=f"follow its output instead: orch logs {name} -f",
        )


# kind -> "module:Class"; modules import their cloud SDK lazily.
_BACKENDS: dict[str, str] = {
    "tmux": "sidecar.jobs.tmux:TmuxBackend",
    "fargate": "sidecar.jobs.fargate:FargateJobs",
}


def register(kind: str, target: str) -> None:
    _BACKENDS[kind] = target


def backend_class(kind: str) -> type[JobBackend]:
    try:
        module, _, name = _BACKENDS[kind].partition(":")
    except KeyError:
        raise OrchError(
            f"job backends of kind {kind!r} are not supported by this version of orch",
            hint=f"supported: {', '.join(sorted(_BACKENDS))}",
        ) from None
    cls: type[JobBackend] = getattr(importlib.import_module(module), name)
    return cls


def create(kind: str, ctx: MachineContext, name: str | None = None) -> JobBackend:
    cls = backend_class(kind)
    return cls(ctx) if name is None else cls(ctx, name)
