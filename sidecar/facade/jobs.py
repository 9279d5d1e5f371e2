"""The facade's jobs: run, list, read, stop and fetch jobs, on a machine or a backend.

A machine's jobs run in tmux there (one backend per machine, kept for its shell); a job
`--on` a configured backend (`[backends.NAME]`, a Fargate task) ships its code from the
machine's sync, and the backend that remembers a job's name is found for the later verbs.
Logs stream as text chunks (from the machine's archive when it is not running). Also the
backends' cloud setup (`backend_init`/`backend_destroy`) and their work queues.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remote_config.jobs import JobInfo
from sidecar.errors import NotFound, OrchError, UsageError
from sidecar.facade.core import FacadeCore

if TYPE_CHECKING:
    from sidecar.jobs.backend import JobBackend


class JobsFacade(FacadeCore):
    def jobs(self, machine: str | None = None, on: str | None = None) -> JobBackend:
        """The job backend: tmux on the machine (one per machine, kept for its shell), or the
        configured backend `on` (`[backends.NAME]`), shipping code from the machine's sync."""
        from sidecar.jobs import backend

        name = self.machine_name(machine)
        if on is None or on == "tmux":
            if name not in self._jobs:
                self._jobs[name] = backend.create("tmux", self.context(name))
            return self._jobs[name]
        key = f"{on}@{name}"
        if key not in self._jobs:
            spec = self.config.config.backends.get(on)
            if spec is None:
                known = ", ".join(["tmux", *sorted(self.config.config.backends)])
                raise NotFound(
                    f"unknown job backend {on!r}",
                    hint=f"declare [backends.{on}] in orch.toml (known: {known})",
                )
            self._jobs[key] = backend.create(spec.kind, self.context(name), on)
        return self._jobs[key]

    def job_backend_of(self, name: str, on: str | None = None) -> str | None:
        """The backend a job runs on: `on` if given, else the configured backend that
        remembers a job of that name, else None (tmux on the machine)."""
        if on is not None:
            return on
        from sidecar.jobs.fargate_store import Store

        for backend_name in sorted(self.config.config.backends):
            store = Store(self.layout.home, self.config.project_name, backend_name)
            if store.get(name) is not None:
                return backend_name
        return None

    async def _backend_jobs(self, machine: str | None = None) -> list[JobInfo]:
        """The jobs of every configured backend that has any (beside the machine's)."""
        from sidecar.jobs.fargate_store import has_records

        jobs: list[JobInfo] = []
        for backend_name in sorted(self.config.config.backends):
            if not has_records(self.layout.home, self.config.project_name, backend_name):
                continue  # no AWS call (nor boto3 import) for a backend never used
            try:
                jobs += await self.jobs(machine, backend_name).status()
            except OrchError as exc:
                jobs.append(
                    JobInfo(
                        name=f"({backend_name})",
                        state="lost",
                        backend=backend_name,
                        detail=f"jobs unavailable: {exc.message}",
                    )
                )
        return jobs

    async def jobs_run(
        self,
        name: str,
        command: str | Sequence[str],
        env: Mapping[str, str] | None = None,
        replace: bool = False,
        machine: str | None = None,
        snapshot: bool | None = None,
        on: str | None = None,
        outputs: str | None = None,
    ) -> JobInfo:
        """Start job `name`; by default from a snapshot of the synced tree (prepare_code);
        `on` a configured backend (a Fargate task), with `outputs` uploaded at its end."""
        from sidecar.jobs.tmux import checked_name

        checked_name(name)  # refuse a bad name before touching the machine
        jobs = self.jobs(machine, on)
        if outputs is not None and jobs.kind == "tmux":
            raise UsageError(
                "--outputs is for jobs on a backend (--on NAME); a machine's job writes its "
                "outputs on the machine",
                hint="copy them with orch sync, or run the job with --on BACKEND",
            )
        workdir = await jobs.prepare_code(snapshot, name)
        if outputs is not None:
            from sidecar.jobs.fargate import FargateJobs

            assert isinstance(jobs, FargateJobs)
            return await jobs.run(
                name, command, env, replace=replace, workdir=workdir, outputs=outputs
            )
        return await jobs.run(name, command, env, replace=replace, workdir=workdir)

    async def jobs_status(self, machine: str | None = None, on: str | None = None) -> list[JobInfo]:
        return await self.jobs(machine, on).status()

    async def jobs_logs(
        self, name: str, tail: int | None = None, machine: str | None = None, on: str | None = None
    ) -> str:
        backend_name = self.job_backend_of(name, on)
        if backend_name is not None:
            return await self.jobs(machine, backend_name).logs(name, tail)
        return "".join([c async for c in self.jobs_stream(name, tail, False, machine)])

    def jobs_follow(
        self,
        name: str,
        tail: int | None = None,
        machine: str | None = None,
        offset: int | None = None,
    ) -> AsyncIterator[str]:
        jobs = self.jobs(machine, self.job_backend_of(name))
        return jobs.stream(name, tail=tail, follow=True, offset=offset)

    def jobs_stream(
        self,
        name: str,
        tail: int | None = None,
        follow: bool = False,
        machine: str | None = None,
        on: str | None = None,
        offset: int | None = None,
    ) -> AsyncIterator[str]:
        """The job's log as text chunks (with `follow`, until the job ends); from the
        machine's archive (EC2: CloudWatch Logs) when the machine is not running. `offset`:
        go on from a byte an earlier stream's chunk reported (`jobs.follow.LogText`)."""
        backend_name = self.job_backend_of(name, on)
        jobs = self.jobs(machine, backend_name)
        stream = jobs.stream(name, tail=tail, follow=follow, offset=offset)
        if backend_name is not None or offset is not None:  # (a resumed stream: no archive)
            return stream
        return self._or_archived(stream, name, tail, machine)

    async def _or_archived(
        self, stream: AsyncIterator[str], name: str, tail: int | None, machine: str | None
    ) -> AsyncIterator[str]:
        from sidecar.errors import ConnectionFailed, MachineNotRunning

        started = False
        try:
            async for chunk in stream:
                started = True
                yield chunk
        except (MachineNotRunning, ConnectionFailed):
            archived = (
                None if started else await self.provider(machine).archived_job_logs(name, tail)
            )
            if archived is None:
                raise
            yield archived

    async def jobs_info(
        self, name: str, machine: str | None = None, on: str | None = None
    ) -> JobInfo:
        return await self.jobs(machine, self.job_backend_of(name, on)).info(name)

    async def jobs_stop(
        self, name: str, machine: str | None = None, on: str | None = None
    ) -> JobInfo:
        return await self.jobs(machine, self.job_backend_of(name, on)).stop(name)

    async def jobs_restart(
        self,
        name: str,
        machine: str | None = None,
        snapshot: bool | None = None,
        on: str | None = None,
    ) -> JobInfo:
        jobs = self.jobs(machine, self.job_backend_of(name, on))
        return await jobs.restart(name, workdir=await jobs.prepare_code(snapshot, name))

    async def jobs_rm(
        self, name: str, purge: bool = False, machine: str | None = None, on: str | None = None
    ) -> None:
        await self.jobs(machine, self.job_backend_of(name, on)).rm(name, purge)

    async def jobs_fetch(self, name: str, into: str | None = None, on: str | None = None) -> str:
        """Download a backend job's declared outputs (default: <project>/outputs/NAME)."""
        backend_name = self.job_backend_of(name, on)
        if backend_name is None:
            raise NotFound(
                f"no backend job named {name!r} with outputs",
                hint="orch fetch is for jobs run with --on BACKEND --outputs DIR",
            )
        from sidecar.jobs.fargate import FargateJobs

        jobs = self.jobs(None, backend_name)
        assert isinstance(jobs, FargateJobs)
        target = into or str(Path(self.config.root) / "outputs" / name)
        return await jobs.fetch_outputs(name, target)

    async def backend_init(self, name: str) -> Any:
        """Create (idempotently, tagged) what backend `name` needs in the cloud."""
        from sidecar.jobs.fargate_infra import init

        return await init(self._fargate(name))

    async def backend_destroy(self, name: str) -> Any:
        """Remove what `backend_init` made (refused while its tasks run)."""
        from sidecar.jobs.fargate_infra import destroy

        return await destroy(self._fargate(name))

    async def queue_submit(
        self,
        name: str,
        on: str,
        commands: Sequence[str],
        machine: str | None = None,
    ) -> Any:
        """Queue `commands` as items on backend `on`'s queue (worker tasks drain it)."""
        from sidecar.jobs import fargate_queue
        from sidecar.jobs.tmux import checked_name

        checked_name(name)
        jobs = self.jobs(machine, on)
        if not hasattr(jobs, "cfg"):
            raise UsageError(f"{on!r} is not a cloud backend; queues need one (--on BACKEND)")
        code = await jobs.prepare_code(True)
        assert code is not None
        return await fargate_queue.submit(self._fargate(on), name, commands, code)

    async def queue_status(self, on: str) -> Any:
        from sidecar.jobs import fargate_queue

        return await fargate_queue.status(self._fargate(on))

    async def _queues(self) -> list[Any]:
        from sidecar.jobs.fargate_store import Store

        out = []
        for backend_name in sorted(self.config.config.backends):
            store = Store(self.layout.home, self.config.project_name, backend_name)
            if store.cache_get("queue:submitted") is None:
                continue  # never queued anything: no AWS call
            with contextlib.suppress(OrchError):
                out.append(await self.queue_status(backend_name))
        return out

    def _fargate(self, name: str) -> Any:
        from sidecar.jobs.fargate import FargateJobs

        jobs = self.jobs(None, name)
        if not isinstance(jobs, FargateJobs):
            raise UsageError(f"{name!r} is not a cloud backend; it needs no init")
        return jobs

    async def attach_argv(self, name: str, machine: str | None = None) -> list[str]:
        return await self.jobs(machine).attach_argv(name)
