"""The `fargate` job backend: one ECS Fargate task per job (`orch run NAME --on BACKEND`).

A job's code is the synced tree's snapshot packed into S3 (`fargate_code.py`); the task runs
the bootstrap of `remote_config/fargate_boot.py`, which fetches it by presigned URL, runs
the command and uploads declared outputs; its output goes to CloudWatch Logs through the
awslogs driver. State comes from ECS (lastStatus, stopCode, the container's exit code) and,
once a task has stopped, from the local record (`fargate_store.py`), since ECS forgets
stopped tasks. Logs are read and followed by `fargate_logs.py`. boto3 is imported on first
use.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from remote_config import fargate as fg
from remote_config import fargate_boot as boot
from remote_config import fargate_prices as prices
from remote_config.jobs import JobInfo, command_text, validate_env
from remote_config.model import FargateBackend as FargateConfig
from sidecar.errors import Conflict, NotFound, OrchError, UsageError
from sidecar.jobs.aws import AwsSession
from sidecar.jobs.backend import BackendCapabilities, JobBackend
from sidecar.jobs.fargate_logs import Pacing, stream_events
from sidecar.jobs.fargate_store import JobRecord, Store

if TYPE_CHECKING:
    from sidecar.context import MachineContext

URL_EXPIRY_S = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
POLL_S = 1.0
STOP_WAIT_S = 40.0  # ECS's default stop timeout (30 s) and some


class FargateJobs(JobBackend):
    kind = "fargate"
    capabilities = BackendCapabilities(attach=False, debug=False, live_code=False, logs="service")

    def __init__(self, ctx: MachineContext, name: str | None = None) -> None:
        super().__init__(ctx, name)
        backends = ctx.config.config.backends
        self.name = name or "fargate"
        if self.name not in backends:
            known = ", ".join(sorted(backends)) or "none"
            raise NotFound(
                f"unknown job backend {self.name!r}",
                hint=f'declare [backends.{self.name}] kind = "fargate" in orch.toml '
                f"(known: {known})",
            )
        self.cfg: FargateConfig = backends[self.name]
        self.project = ctx.config.project_name
        self.names = fg.names(self.project, self.name, self.cfg)
        self.aws = AwsSession(self.cfg.region, self.name)
        self.store = Store(ctx.layout.home, self.project, self.name)
        self.log_pacing = Pacing()  # how often `orch logs -f` reads CloudWatch

    # -- helpers ---------------------------------------------------------------------------
    async def bucket(self) -> str:
        return self.cfg.bucket or self.names.bucket(await self.aws.account())

    async def _role_arns(self) -> tuple[str, str]:
        account = await self.aws.account()
        execution = self.cfg.execution_role_arn or (
            f"arn:aws:iam::{account}:role/{self.names.execution_role}"
        )
        task = self.cfg.task_role_arn or f"arn:aws:iam::{account}:role/{self.names.task_role}"
        return execution, task

    async def task_definition_arn(self) -> str:
        """The registered task definition for the current config (registered once per change)."""
        execution, task = await self._role_arns()
        definition = fg.task_definition(
            self.names, self.cfg, execution, task, boot.container_command()
        )
        key = f"taskdef:{fg.definition_digest(definition)}"
        cached = self.store.cache_get(key)
        if cached:
            return cached
        out = await self.aws.call("ecs", "register_task_definition", **definition)
        arn = str(out["taskDefinition"]["taskDefinitionArn"])
        self.store.cache_put(key, arn)
        return arn

    def _check_network(self) -> None:
        if not self.cfg.subnets or not self.cfg.security_groups:
            raise UsageError(
                f"backend {self.name!r} has no subnets or security groups",
                hint=f"set subnets = [...] and security_groups = [...] in [backends.{self.name}]",
            )

    # -- code ------------------------------------------------------------------------------
    async def prepare_code(self, snapshot: bool | None, name: str = "") -> str | None:
        """The S3 key of the synced tree's snapshot archive (uploaded if new)."""
        from sidecar.jobs.fargate_code import ship_snapshot
        from sidecar.sync.snapshot import prepare_snapshot

        if snapshot is False:
            raise UsageError(
                "Fargate jobs always run from a snapshot of the synced tree",
                hint="leave out --no-snapshot",
            )
        self._check_network()  # before any work: a run would be refused anyway
        path, generation = await prepare_snapshot(self.ctx)
        return await ship_snapshot(
            self.ctx, self.aws, self.store, await self.bucket(), path, generation
        )

    async def _presign(self, method: str, key: str) -> str:
        bucket = await self.bucket()
        s3 = self.aws.client("s3")
        url = await asyncio.to_thread(
            s3.generate_presigned_url,
            method,
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=URL_EXPIRY_S,
        )
        return str(url)

    # -- operations ------------------------------------------------------------------------
    async def run(
        self,
        name: str,
        command: str | Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        replace: bool = False,
        workdir: str | None = None,
        outputs: str | None = None,
    ) -> JobInfo:
        from sidecar.jobs.fargate_code import digest_of_key
        from sidecar.jobs.tmux import checked_name

        name = checked_name(name)
        try:
            text = command_text(command)
            merged = validate_env({**self.ctx.config.config.jobs.env, **(env or {})})
            outputs = boot.check_outputs(outputs) if outputs else None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self._check_network()
        old = self.store.get(name)
        if old is not None:
            current = await self._info(old)
            if current.state == "running":
                if not replace:
                    raise Conflict(
                        f"job {name} is already running on {self.name}",
                        hint=f"stop it first (orch stop {name}) or pass --replace",
                    )
                await self.stop(name)
        code_url = await self._presign("get_object", workdir) if workdir else None
        outputs_key = f"outputs/{self.project}/{name}/{_stamp()}.tar.gz" if outputs else None
        outputs_url = await self._presign("put_object", outputs_key) if outputs_key else None
        job_env = boot.job_environment(
            text,
            merged,
            code_url=code_url,
            code_sha256=digest_of_key(workdir) if workdir else None,
            outputs=outputs,
            outputs_url=outputs_url,
        )
        request = fg.run_task_request(
            self.names, self.cfg, await self.task_definition_arn(), name, job_env
        )
        out = await self.aws.call("ecs", "run_task", **request)
        if out.get("failures") or not out.get("tasks"):
            reasons = "; ".join(
                f"{f.get('reason')}: {f.get('detail') or f.get('arn', '')}"
                for f in out.get("failures", [])
            )
            raise OrchError(
                f"ECS did not start job {name}: {reasons or 'no task returned'}",
                hint="check the cluster exists (orch backend init) and the capacity provider "
                f"{self.cfg.capacity_provider} is enabled on it",
            )
        task = out["tasks"][0]
        record = JobRecord(
            name=name,
            task_arn=task["taskArn"],
            cluster=self.names.cluster,
            log_group=self.names.log_group,
            log_stream=fg.log_stream(task["taskArn"]),
            command=text,
            env=dict(merged),
            code_key=workdir,
            outputs=outputs,
            outputs_key=outputs_key,
            created=datetime.now(UTC).isoformat(),
            cpu=self.cfg.cpu,
            memory=self.cfg.memory,
            storage_gb=self.cfg.ephemeral_storage_gb,
            capacity_provider=self.cfg.capacity_provider,
        )
        self.store.put(record)
        return self._job(record, fg.task_state(task))

    async def restart(self, name: str, workdir: str | None = None) -> JobInfo:
        record = self._record(name)
        return await self.run(
            name,
            record.command,
            record.env,
            replace=True,
            workdir=workdir or record.code_key,
            outputs=record.outputs,
        )

    async def status(self) -> list[JobInfo]:
        records = self.store.all()
        live = [r for r in records if r.final is None]
        described: dict[str, dict[str, Any]] = {}
        by_cluster: dict[str, list[str]] = {}
        for r in live:
            by_cluster.setdefault(r.cluster, []).append(r.task_arn)
        for cluster, arns in by_cluster.items():
            for start in range(0, len(arns), 100):
                out = await self.aws.call(
                    "ecs", "describe_tasks", cluster=cluster, tasks=arns[start : start + 100]
                )
                described.update({t["taskArn"]: t for t in out.get("tasks", [])})
        jobs = []
        for r in records:
            if r.final is not None:
                jobs.append(self._job_from_final(r))
            elif r.task_arn in described:
                jobs.append(self._settle(r, described[r.task_arn]))
            else:
                jobs.append(
                    JobInfo(
                        name=r.name,
                        state="lost",
                        command=r.command,
                        backend=self.kind,
                        detail="ECS no longer knows the task and orch saw no end",
                    )
                )
        return jobs

    async def _info(self, record: JobRecord) -> JobInfo:
        if record.final is not None:
            return self._job_from_final(record)
        out = await self.aws.call(
            "ecs", "describe_tasks", cluster=record.cluster, tasks=[record.task_arn]
        )
        tasks = out.get("tasks", [])
        if not tasks:
            return JobInfo(
                name=record.name,
                state="lost",
                command=record.command,
                backend=self.kind,
                detail="ECS no longer knows the task",
            )
        return self._settle(record, tasks[0])

    async def info(self, name: str) -> JobInfo:
        return await self._info(self._record(name))

    async def stop(self, name: str) -> JobInfo:
        """stop_task (ECS sends SIGTERM, then SIGKILL after the container's stop timeout),
        then wait a bounded time for the task to report its end."""
        record = self._record(name)
        job = await self._info(record)
        if job.state != "running":
            return job
        record.stop_requested = True
        self.store.put(record)
        out = await self.aws.call(
            "ecs",
            "stop_task",
            cluster=record.cluster,
            task=record.task_arn,
            reason=f"stopped by orch stop {name}",
        )
        task = out["task"]
        deadline = time.monotonic() + STOP_WAIT_S
        while not (task.get("lastStatus") == "STOPPED" and task.get("stopCode")):
            if time.monotonic() > deadline:
                if task.get("lastStatus") == "STOPPED":
                    break
                return JobInfo(
                    name=name,
                    state="running",
                    command=record.command,
                    backend=self.kind,
                    detail="stopping",
                )
            await asyncio.sleep(POLL_S / 2)
            described = await self.aws.call(
                "ecs", "describe_tasks", cluster=record.cluster, tasks=[record.task_arn]
            )
            task = (described.get("tasks") or [task])[0]
        return self._settle(record, task)

    async def rm(self, name: str, purge: bool = False) -> None:
        record = self._record(name)
        job = await self._info(record)
        if job.state == "running":
            raise Conflict(f"job {name} is still running", hint=f"stop it first: orch stop {name}")
        if purge:
            from contextlib import suppress

            with suppress(NotFound):
                await self.aws.call(
                    "logs",
                    "delete_log_stream",
                    logGroupName=record.log_group,
                    logStreamName=record.log_stream,
                )
            if record.outputs_key:
                await self.aws.call(
                    "s3", "delete_object", Bucket=await self.bucket(), Key=record.outputs_key
                )
        self.store.remove(name)

    def stream(
        self,
        name: str,
        *,
        tail: int | None = None,
        follow: bool = False,
        offset: int | None = None,  # CloudWatch events have no byte offsets: none handed out
    ) -> AsyncIterator[str]:
        return self._stream(name, tail, follow)

    async def _stream(self, name: str, tail: int | None, follow: bool) -> AsyncIterator[str]:
        """The CloudWatch stream (`fargate_logs.py`); with `follow`, until the task stops."""
        record = self._record(name)

        async def read(args: dict[str, Any]) -> dict[str, Any]:
            return dict(
                await self.aws.call(
                    "logs",
                    "get_log_events",
                    logGroupName=record.log_group,
                    logStreamName=record.log_stream,
                    **args,
                )
            )

        async def running() -> bool:
            return (await self._info(self._record(name))).state == "running"

        async for chunk in stream_events(
            read, running, tail=tail, follow=follow, pacing=self.log_pacing
        ):
            yield chunk

    async def fetch_outputs(self, name: str, into: str) -> str:
        """Download and unpack the job's declared outputs into `into`; returns the folder."""
        import tarfile
        import tempfile
        from pathlib import Path

        record = self._record(name)
        if not record.outputs_key:
            raise UsageError(
                f"job {name} declared no outputs",
                hint=f"run it with --outputs DIR: orch run {name} --on "
                f"{self.name} --outputs out -- CMD",
            )
        job = await self._info(record)
        if job.state == "running":
            raise Conflict(
                f"job {name} is still running; its outputs come when it ends",
                hint=f"follow it: orch logs {name} -f",
            )
        target = Path(into)
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="orch-out-") as tmp:
            archive = Path(tmp) / "outputs.tar.gz"
            try:
                await self.aws.call(
                    "s3",
                    "download_file",
                    Bucket=await self.bucket(),
                    Key=record.outputs_key,
                    Filename=str(archive),
                )
            except NotFound:
                raise NotFound(
                    f"job {name} uploaded no outputs (its folder "
                    f"{record.outputs!r} was missing, or the upload failed)",
                    hint=f"see the end of its log: orch logs {name}",
                ) from None
            with tarfile.open(archive) as tf:
                tf.extractall(target, filter="data")
        return str(target)

    # -- state -----------------------------------------------------------------------------
    def _record(self, name: str) -> JobRecord:
        record = self.store.get(name)
        if record is None:
            raise NotFound(
                f"no job named {name!r} on backend {self.name!r}",
                hint="list the jobs with: orch status",
            )
        return record

    def _settle(self, record: JobRecord, task: Mapping[str, Any]) -> JobInfo:
        state = fg.task_state(task)
        if state.state == "succeeded" and record.stop_requested:
            state = fg.TaskState(
                "stopped", state.exit_code, "stopped by orch stop", state.started, state.ended
            )
        if state.state != "running":
            record.final = {
                "state": state.state,
                "exit_code": state.exit_code,
                "detail": state.detail,
                "started": _iso(state.started),
                "ended": _iso(state.ended) or datetime.now(UTC).isoformat(),
            }
            job = self._job_from_final(record)
            record.final["cost_usd"] = job.cost_usd
            self.store.put(record)
            return job
        return self._job(record, state)

    def _job_from_final(self, record: JobRecord) -> JobInfo:
        f = record.final or {}
        return self._job(
            record,
            fg.TaskState(
                f.get("state", "lost"),
                f.get("exit_code"),
                f.get("detail"),
                _dt(f.get("started")),
                _dt(f.get("ended")),
            ),
        )

    def _job(self, record: JobRecord, state: fg.TaskState) -> JobInfo:
        started = state.started or _dt(record.created)
        end = state.ended or (None if state.state == "running" else datetime.now(UTC))
        duration = ((end or datetime.now(UTC)) - started).total_seconds() if started else None
        rate, _exact = prices.rate(self.cfg.region, self.cfg.architecture, record.capacity_provider)
        cost = (
            prices.task_cost(duration, record.cpu, record.memory, record.storage_gb, rate)
            if duration is not None
            else None
        )
        return JobInfo(
            name=record.name,
            state=state.state,
            started=started,
            ended=state.ended,
            exit_code=state.exit_code,
            duration_s=duration,
            command=record.command,
            detail=state.detail,
            backend=self.kind,
            cost_usd=cost,
        )


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _dt(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
