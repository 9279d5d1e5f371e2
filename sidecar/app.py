"""The Orchestrator facade: every orch operation, once, for both front ends.

The `orch` CLI and the language server are thin adapters over this class, so they can never
disagree. It owns the project config, the machine providers and the connection pool; long-
lived things (the local machine's server) run in their own processes and are found through
their state files, so any number of Orchestrators can coexist without starting duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remote_config.jobs import JobInfo
from remote_config.loader import ResolvedConfig
from remote_config.model import OrchConfig
from remote_config.ssh_config import LocalForwardSpec, ssh_argv
from sidecar.config import load_project_config
from sidecar.errors import ConfigFileError, NotFound, OrchError, Unreachable, UsageError
from sidecar.layout import Layout
from sidecar.machines.base import MachineInfo, Progress, Provider, SSHTarget, TerminatePlan
from sidecar.machines.overview import MachineList
from sidecar.results import (
    ConfigProblemInfo,
    ConfigState,
    CostStatus,
    CreatePlan,
    DebugConfigResult,
    DebugSession,
    FleetEntry,
    IdleStatus,
    MachineEntry,
    MachinesOverview,
    OrchStatus,
    PortForwardInfo,
    PortsResult,
    ProfileRequest,
    ProfileResult,
    SshConfigResult,
    SyncStatus,
)
from sidecar.ssh.pool import ConnectionPool

if TYPE_CHECKING:
    from sidecar.context import MachineContext
    from sidecar.jobs.backend import JobBackend
    from sidecar.machines.ec2.aws import Aws
    from sidecar.machines.spend import Sighting
    from sidecar.ssh.forwarder import ForwardOwner


def config_problems(exc: ConfigFileError) -> list[ConfigProblemInfo]:
    return [
        ConfigProblemInfo(file=p.file, line=p.line, column=p.column, path=p.path, message=p.message)
        for p in exc.problems
    ]


class Orchestrator:
    def __init__(
        self, cwd: Path | None = None, layout: Layout | None = None, one_shot: bool = False
    ) -> None:
        self.cwd = Path(cwd or os.getcwd()).absolute()
        # A short-lived process (the CLI): read-only queries may go through OpenSSH's
        # multiplexed master instead of opening (and importing) an asyncssh connection.
        self.one_shot = one_shot
        self.layout = layout or Layout.from_env()
        self._config: ResolvedConfig | None = None
        self._providers: dict[str, Provider] = {}
        self.pool = ConnectionPool()
        self._forward_owners: dict[str, ForwardOwner] = {}
        self._jobs: dict[str, JobBackend] = {}

    # -- config ------------------------------------------------------------------------------
    @property
    def config(self) -> ResolvedConfig:
        if self._config is None:
            self._config = load_project_config(self.cwd)
        return self._config

    def forget_config(self) -> None:
        """orch.toml changed on disk: the next use reads it anew (and may fail on it)."""
        self._config = None
        self._providers.clear()
        for jobs in self._jobs.values():  # their contexts hold the old config
            jobs.close()
        self._jobs.clear()

    def reload_config(self) -> ResolvedConfig:
        self.forget_config()
        return self.config

    @staticmethod
    def config_schema() -> dict[str, Any]:
        schema = OrchConfig.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = "orch.toml"
        return schema

    def config_init(self) -> tuple[Path, bool]:
        """Write a starter orch.toml into the project folder unless one exists there; returns
        (its path, whether it was written). Never overwrites."""
        from remote_config.loader import CONFIG_NAME, resolve
        from remote_config.starter import starter_toml
        from sidecar.config import find_config

        existing = find_config(self.cwd)
        if existing is not None:
            return existing, False
        path = self.cwd / CONFIG_NAME
        name = resolve(OrchConfig(), None, str(self.cwd)).project_name
        try:
            with path.open("x", encoding="utf-8") as file:
                file.write(starter_toml(name))
        except FileExistsError:
            return path, False
        self.forget_config()
        return path, True

    def config_show(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "file": cfg.path,
            "project_root": cfg.root,
            "project_name": cfg.project_name,
            "local_dir": cfg.local_dir,
            "remote_dir": cfg.remote_dir,
            "config": cfg.config.model_dump(mode="json"),
        }

    # -- machines ----------------------------------------------------------------------------
    def machine_name(self, machine: str | None = None) -> str:
        return machine or self.config.config.project.default_machine

    def provider(self, machine: str | None = None) -> Provider:
        name = self.machine_name(machine)
        if name in self._providers:
            return self._providers[name]
        try:
            _, spec = self.config.machine(name)
        except KeyError:
            known = ", ".join(self.config.config.machine_names())
            raise NotFound(f"unknown machine {name!r}", hint=f"known machines: {known}") from None
        from sidecar.machines import registry

        provider = registry.create(name, spec, self.layout, self.config.project_name)
        self._providers[name] = provider
        return provider

    async def up(self, machine: str | None = None, progress: Progress | None = None) -> MachineInfo:
        provider = self.provider(machine)
        info = await provider.up(progress)
        if info.state == "running":
            await self.write_ssh_config(machine)
            await self._start_idle_agent(machine, info, progress)
        return _with_capabilities(info, provider)

    async def _start_idle_agent(
        self, machine: str | None, info: MachineInfo, progress: Progress | None
    ) -> None:
        """Start (or restart) the machine's idle agent; a failure is a note, not a failed up."""
        from sidecar.idle.service import ensure_agent

        try:
            started = await ensure_agent(self.context(machine), info)
        except OrchError as exc:
            note = f"idle stop is not active: {exc.message}"
            info.detail = f"{info.detail}; {note}" if info.detail else note
            return
        if started and progress:
            progress(f"idle agent {started}")

    async def idle_status(self, machine: str | None = None) -> IdleStatus | None:
        from sidecar.idle.service import read_status

        return await read_status(self.context(machine))

    async def idle_keep(self, machine: str | None = None) -> IdleStatus | None:
        """ "Keep running": reset the machine's idle timer, then read the agent's state."""
        from sidecar.idle.service import keep

        return await keep(self.context(machine))

    async def down(
        self, machine: str | None = None, terminate: bool = False, force: bool = False
    ) -> MachineInfo:
        """Stop the machine; with `terminate`, destroy it and its disks (cloud kinds). While
        jobs run there, only with `force` (a stop may end them)."""
        provider = self.provider(machine)
        if not force:
            await self._refuse_down_with_jobs(machine)
        with_target = None
        with contextlib.suppress(OrchError):
            with_target = await provider.ssh_target()
        if with_target is not None:
            from sidecar.ssh.ports_service import stop_forwards

            with contextlib.suppress(OrchError):
                await stop_forwards(self.layout, with_target.alias)
            self.pool.drop(with_target.alias)
        info = await (provider.terminate() if terminate else provider.down())
        return _with_capabilities(info, provider)

    async def up_plan(self, machine: str | None = None) -> CreatePlan | None:
        """What `up` would newly create and pay for (None: nothing new), to show or ask."""
        return await self.provider(machine).create_plan()

    async def terminate_plan(self, machine: str | None = None) -> str | None:
        """What `down(terminate=True)` would destroy, in words (None: nothing exists)."""
        return await self.provider(machine).terminate_plan()

    def _fleet_aws(self) -> tuple[Aws, list[str]]:
        from remote_config.model import EC2Machine
        from sidecar.machines.ec2.aws import Aws

        specs = [m for m in self.config.config.machines.values() if isinstance(m, EC2Machine)]
        region = (
            specs[0].region
            if specs
            else os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
        regions = sorted({s.region for s in specs} or {region})
        return Aws(region, specs[0].aws_profile if specs else None), regions

    async def machines_list(self, all_regions: bool = False) -> list[FleetEntry]:
        """Every orch-created EC2 instance the credentials see (this project's regions, or
        every region), across projects: finds forgotten machines."""
        from sidecar.machines.ec2 import fleet

        aws, regions = self._fleet_aws()
        if all_regions:
            regions = await fleet.all_regions(aws)
        return await fleet.list_fleet(aws, regions)

    async def machines_inventory(self, all_regions: bool = False) -> MachinesOverview:
        """`orch machines`: this project's machines of every kind and every orch-tagged EC2
        instance the credentials see, what each costs, and the spend today."""
        from sidecar.machines import inventory

        names = self.config.config.machine_names()
        rows = list(await asyncio.gather(*(self._inventory_row(n) for n in names)))
        fleet: list[FleetEntry] = []
        notes: list[str] = []
        if all_regions or any(r.kind == "ec2" for r in rows) or inventory.aws_configured():
            try:
                fleet = await self.machines_list(all_regions=all_regions)
            except OrchError as exc:
                notes.append(f"EC2 instances not listed: {exc.message}")
        else:
            notes.append("EC2 instances not looked for: no AWS credentials are set up")
        machines = inventory.merge(self.config.project_name, rows, fleet)
        cost = await self._record_spend(inventory.sightings(machines))
        return MachinesOverview(machines=machines, cost=cost, notes=notes)

    async def _inventory_row(self, name: str) -> MachineEntry:
        from sidecar.machines import inventory, overview

        kind = self.config.machine(name)[1].kind
        limit = overview.STATUS_TIMEOUT_S
        try:
            info = await asyncio.wait_for(self.machine_status(name), limit)
        except TimeoutError:
            detail = f"no answer within {limit:.0f} s"
            info = MachineInfo(name=name, kind=kind, state="unknown", detail=detail)
        except OrchError as exc:
            info = MachineInfo(name=name, kind=kind, state="unknown", detail=exc.message)
        return inventory.entry_of(self.config.project_name, info)

    async def _record_spend(self, sightings: list[Sighting]) -> CostStatus | None:
        """Record machines seen running in the cost ledger; the spend today (None: the
        ledger cannot be written, which never fails a status)."""
        from sidecar.machines import spend

        budget = self.config.config.cost.daily_budget
        try:
            return await asyncio.to_thread(spend.record, self.layout.home, sightings, budget)
        except OSError:
            return None

    async def _spend_of(self, info: MachineInfo) -> CostStatus | None:
        from sidecar.machines import inventory, spend

        key = inventory.run_key(self.config.project_name, info.name)
        seen = spend.sighting(key, info.state, info.uptime_s, info.price_per_hour)
        return await self._record_spend([seen] if seen else [])

    async def machines_stop(self, entries: list[FleetEntry]) -> list[FleetEntry]:
        from sidecar.machines.ec2 import fleet

        aws, _ = self._fleet_aws()
        return await fleet.stop_fleet(aws, entries)

    async def machines_overview(
        self, names: Sequence[str] | None = None, timeout_s: float | None = None
    ) -> MachineList:
        """Every machine of orch.toml (or those `names`) with its state (and $/h where it has
        a cost), each read concurrently within `timeout_s`: the editor's machine picker. A
        status that fails is an "unknown" entry saying why, not an error."""
        from sidecar.machines import overview

        names = list(names) if names is not None else self.config.config.machine_names()
        providers: list[Provider] = []
        failed: list[MachineInfo] = []
        for name in names:
            try:
                providers.append(self.provider(name))
            except OrchError as exc:  # a kind this orch cannot drive: listed, not fatal
                kind = self.config.machine(name)[1].kind
                failed.append(
                    MachineInfo(name=name, kind=kind, state="unknown", detail=exc.message)
                )
        infos = await overview.statuses(providers, timeout_s or overview.STATUS_TIMEOUT_S)
        by_name = {i.name: i for i in [*infos, *failed]}
        return MachineList(default=self.machine_name(), machines=[by_name[n] for n in names])

    async def terminate_preview(self, machine: str | None = None) -> TerminatePlan:
        """What terminating the machine destroys and what would be lost (unpushed work,
        volumes), for a confirmation; nothing is changed."""
        plan = await self.terminate_plan(machine)
        warnings = await self.terminate_warnings(machine) if plan is not None else []
        return TerminatePlan(machine=self.machine_name(machine), plan=plan, warnings=warnings)

    async def terminate_warnings(self, machine: str | None = None) -> list[str]:
        """What destroying the machine would lose (unpushed work), for the confirmation."""
        return await self.provider(machine).terminate_warnings()

    async def _refuse_down_with_jobs(self, machine: str | None) -> None:
        from sidecar.errors import JobsRunning

        if (await self.machine_status(machine)).state != "running":
            return
        try:
            running = [j.name for j in await self.jobs_status(machine) if j.state == "running"]
        except OrchError:
            return  # jobs cannot be listed: nothing to warn about that we know of
        if running:
            shown = ", ".join(running[:20]) + (" …" if len(running) > 20 else "")
            raise JobsRunning(
                f"{len(running)} job(s) still run on {self.machine_name(machine)}: {shown}; "
                "stopping the machine may end them (a cloud machine's stop does)",
                hint="stop them first (orch stop NAME), or stop the machine anyway with "
                "`orch down --force`",
            )

    async def machine_status(self, machine: str | None = None) -> MachineInfo:
        provider = self.provider(machine)
        return _with_capabilities(await provider.status(), provider)

    async def status(self, machine: str | None = None) -> OrchStatus:
        try:
            file = self.config.path
        except ConfigFileError as exc:
            # Nothing can be looked up without a valid config; say so instead of failing.
            problems = config_problems(exc)
            return OrchStatus(
                machine=MachineInfo(
                    name=machine or "?", kind="?", state="unknown", detail="orch.toml has errors"
                ),
                config=ConfigState(file=problems[0].file if problems else None, problems=problems),
            )
        try:
            info = await self._bounded(self.machine_status(machine), "the machine's state")
        except OrchError as exc:  # an unknown machine (the orch.machine setting)…: say it
            return OrchStatus(
                machine=MachineInfo(
                    name=machine or "?", kind="?", state="unknown", detail=exc.message
                ),
                config=ConfigState(file=file, machines=self.config.config.machine_names()),
            )
        ports: list[PortForwardInfo] = []
        with contextlib.suppress(OrchError):  # a machine without a known alias has none
            ports = (await self.ports_list(machine)).ports
        sync = await self.sync_status(machine)
        jobs: list[JobInfo] = []
        idle = None
        if info.state != "running":
            note = "jobs unknown until the machine is up (orch up)"
            info.detail = f"{info.detail}; {note}" if info.detail else note
        else:
            with contextlib.suppress(OrchError):  # before the jobs: it marks them
                await self._bounded(self._interruption(machine, info), "the interruption check")
            try:
                jobs = await self._bounded(self.jobs_status(machine), "the job list")
            except OrchError as exc:  # the machine still shows; say why its jobs do not
                info.detail = f"jobs unavailable: {exc.message}"
            else:
                from sidecar.debug.service import drop_ended_forwards

                with contextlib.suppress(OrchError):
                    ended = drop_ended_forwards(self.context(machine), jobs, ports)
                    if await self._bounded(ended, "the debug forwards"):
                        ports = (await self.ports_list(machine)).ports
            with contextlib.suppress(OrchError):
                idle = await self._bounded(self.idle_status(machine), "the idle agent's state")
        jobs += await self._backend_jobs(machine)
        queues = await self._queues()
        return OrchStatus(
            machine=info,
            cost=await self._spend_of(info),
            jobs=jobs,
            ports=ports,
            sync=sync,
            idle=idle,
            queues=queues,
            config=ConfigState(file=file, machines=self.config.config.machine_names()),
        )

    @property
    def read_timeout_s(self) -> float:
        from sidecar.watch import read_timeout

        return read_timeout()

    async def _bounded(self, coro: Any, what: str) -> Any:
        """One remote read of `orch status`, given up after `read_timeout_s`: a machine that
        keeps its connection open without answering is Unreachable, never a hang."""
        timeout = self.read_timeout_s
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            raise Unreachable(
                f"unreachable: no answer for {what} within {timeout:g} s",
                hint="is the machine up and its network path open? try: orch up",
            ) from None

    async def _interruption(self, machine: str | None, info: MachineInfo) -> None:
        """Check the running machine for a platform interruption notice (an EC2 spot
        instance's 2-minute warning): shown on the machine, recorded there for its jobs."""
        from remote_config.interruption import describe, parse_check

        check = self.provider(machine).interruption_check()
        if check is None:
            return
        with contextlib.suppress(OrchError):
            notice = parse_check(await self.context(machine).remote_text(check)).current
            if notice is not None:
                info.interruption = notice
                info.detail = (
                    f"{describe(notice)}; {info.detail}" if info.detail else describe(notice)
                )

    async def ssh_target(self, machine: str | None = None) -> SSHTarget:
        return await self.provider(machine).ssh_target()

    async def probe(self, machine: str | None = None) -> None:
        """Connect once, verifying the pinned host key; raises the ConnectionFailed (exit 5)
        that says why the machine cannot be reached, or returns when it can. A connection of
        its own, not the pool's: a pooled one (the agent's) was checked when it was opened,
        and the key may have changed since (`orch ssh` exiting 255 asks this)."""
        from sidecar.ssh.pool import open_connection

        conn = await open_connection(await self.ssh_target(machine))
        conn.close()

    # -- OpenSSH -----------------------------------------------------------------------------
    def _forwards(self, machine: str, *, direct: bool = False) -> tuple[LocalForwardSpec, ...]:
        """orch.toml's forwards for `machine` that orch runs (or, with `direct`, the ones
        it leaves alone because the local machine is this computer: ports_service)."""
        from sidecar.ssh.ports_service import configured, is_direct

        kind = self.provider(machine).kind
        return tuple(
            spec
            for spec in configured(self.config.config, machine)
            if is_direct(kind, spec) == direct
        )

    async def write_ssh_config(self, machine: str | None = None) -> Path:
        """Render the machine's Host block into orch's managed ssh config."""
        from sidecar.ssh.managed import host_entry, write_managed_config

        name = self.machine_name(machine)
        target = await self.ssh_target(name)
        write_managed_config(self.layout, [host_entry(self.layout, target, self._forwards(name))])
        return self.layout.ssh_config

    async def ssh_argv(
        self,
        machine: str | None = None,
        command: list[str] | None = None,
        *,
        tty: bool | None = None,
    ) -> list[str]:
        """argv running OpenSSH to the machine through the managed config."""
        name = self.machine_name(machine)
        target = await self.ssh_target(name)
        await self.write_ssh_config(name)
        remote = " ".join(command) if command else None
        return ssh_argv(str(self.layout.ssh_config), target.alias, remote, tty=bool(tty))

    # -- sync ---------------------------------------------------------------------------------
    async def sync_start(
        self,
        foreground: bool = False,
        machine: str | None = None,
        progress: Callable[[int], None] | None = None,
        ready: Callable[[SyncStatus], None] | None = None,
    ) -> SyncStatus:
        """Start watching and syncing (the background process, or this one if `foreground`,
        calling `ready` once the initial sync is done and it watches)."""
        from sidecar.sync import control

        return await control.start(
            self.context(machine), foreground=foreground, progress=progress, ready=ready
        )

    async def sync_stop(self, machine: str | None = None) -> SyncStatus:
        from sidecar.sync import control

        return await control.stop(self.context(machine))

    async def sync_status(self, machine: str | None = None) -> SyncStatus:
        from sidecar.sync.service import read_status

        return read_status(self.context(machine))

    async def sync_now(
        self, machine: str | None = None, progress: Callable[[int], None] | None = None
    ) -> SyncStatus:
        """A full reconcile now (by the running watcher, or here when none runs)."""
        from sidecar.sync import control

        return await control.now(self.context(machine), progress)

    async def sync_resolve(self, paths: list[str], machine: str | None = None) -> SyncStatus:
        """Forget recorded conflicts (all when `paths` is empty)."""
        from sidecar.sync import control

        return control.resolve(self.context(machine), paths)

    async def prepare_snapshot(self, machine: str | None = None) -> tuple[str, int]:
        """(remote path, generation) of a hard-linked snapshot of the synced tree."""
        from sidecar.sync.snapshot import prepare_snapshot

        return await prepare_snapshot(self.context(machine))

    # -- jobs ------------------------------------------------------------------------------
    def context(self, machine: str | None = None) -> MachineContext:
        """The narrow context services get for one machine (never the facade itself)."""
        from sidecar.context import MachineContext

        return MachineContext(
            self.config, self.layout, self.pool, self.provider(machine), self.one_shot
        )

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

    # -- debug ------------------------------------------------------------------------------
    async def debug_start(
        self,
        name: str,
        argv: Sequence[str],
        machine: str | None = None,
        env: Mapping[str, str] | None = None,
        replace: bool = False,
        snapshot: bool | None = None,
        say: Callable[[str], None] | None = None,
    ) -> DebugSession:
        """Run `argv` as job `name` under debugpy and forward a local port to it."""
        from sidecar.debug import service

        await self._debug_activity(machine)
        return await service.start(
            self.context(machine),
            self.jobs(machine),
            name,
            list(argv),
            env=dict(env or {}),
            replace=replace,
            snapshot=snapshot,
            say=say,
        )

    async def debug_attach(self, name: str, machine: str | None = None) -> DebugSession:
        """The attach session of a job already running under debugpy (forward restored)."""
        from sidecar.debug import service

        await self._debug_activity(machine)
        return await service.attach(self.context(machine), self.jobs(machine), name)

    async def _debug_activity(self, machine: str | None) -> None:
        """A debug session is activity for the machine's idle agent (best effort)."""
        from sidecar.idle.service import touch_activity

        with contextlib.suppress(OrchError):
            await touch_activity(self.context(machine))

    async def debug_config(
        self, name: str | None = None, machine: str | None = None
    ) -> DebugConfigResult:
        """Write (merge) the attach entry into .vscode/launch.json: for job `name`, or for a
        service listening on `[debug] remote_port`."""
        from sidecar.debug import service

        if name is None:
            configuration = await service.default_configuration(self.context(machine))
        else:
            configuration = (await self.debug_attach(name, machine)).configuration
        path = await asyncio.to_thread(service.write_launch_json, self.config.root, configuration)
        return DebugConfigResult(path=str(path), configuration=configuration)

    # -- profiling ---------------------------------------------------------------------------
    async def profile(
        self,
        request: ProfileRequest,
        local_root: Path | None = None,
        machine: str | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> ProfileResult:
        """Run a GPU profiling session as a job and fetch its trace and summary."""
        from sidecar.profiling import service

        root = local_root or Path(self.config.root) / "profiles"
        return await service.run(
            self.context(machine), self.jobs(machine), request, root, on_output
        )

    async def close(self) -> None:
        for owner in self._forward_owners.values():
            await owner.stop()
        self._forward_owners.clear()
        await self.pool.close()

    # -- ssh ---------------------------------------------------------------------------------
    # Managed ssh config, port forwards and host keys (sidecar/ssh/*_service.py hold the logic).
    async def ssh_config_show(self) -> SshConfigResult:
        from sidecar.ssh import config_service

        return await asyncio.to_thread(config_service.show, self.layout)

    async def ssh_config_write(self) -> SshConfigResult:
        """Write the Host blocks of every machine orch can reach, and the user's Include line."""
        from sidecar.ssh import config_service
        from sidecar.ssh.managed import host_entry

        entries, skipped = [], []
        for name in self.config.config.machine_names():
            try:
                target = await self.ssh_target(name)
            except OrchError as exc:
                skipped.append(f"{name}: not written ({exc.message})")
                continue
            entries.append(host_entry(self.layout, target, self._forwards(name)))
        return await asyncio.to_thread(config_service.write, self.layout, entries, skipped)

    async def ssh_config_remove(self) -> SshConfigResult:
        from sidecar.ssh import config_service

        return await asyncio.to_thread(config_service.remove, self.layout)

    async def _alias(self, name: str) -> str:
        """The machine's SSH alias, also when it is not running (for state lookups)."""
        return self.provider(name).alias

    async def ports_list(self, machine: str | None = None) -> PortsResult:
        """The machine's forwards; dead ones (their forwarder was killed) are restarted."""
        from sidecar.ssh import ports_service

        name = self.machine_name(machine)
        alias = await self._alias(name)
        failed: list[PortForwardInfo] = []
        dead = ports_service.dead_forwards(self.layout, alias)
        if dead:
            with contextlib.suppress(OrchError):  # not running: they stay listed as dead
                target = await self.ssh_target(name)
                failed = await ports_service.revive(self.layout, target, name, dead)
        return ports_service.list_ports(
            self.layout, alias, name, self._forwards(name), self._forwards(name, direct=True)
        ).with_failed(failed)

    async def ports_add(
        self,
        local_port: int,
        remote_port: int | None = None,
        remote_host: str = "127.0.0.1",
        machine: str | None = None,
        reverse: bool = False,
    ) -> PortForwardInfo:
        """Forward 127.0.0.1:local_port to remote_host:remote_port (default: orch.toml, else
        the same port) on the machine; with `reverse`, the machine's remote_host:remote_port
        to 127.0.0.1:local_port here. PortBusy names the process holding the port."""
        from sidecar.ssh import ports_service

        name = self.machine_name(machine)
        spec, from_config = ports_service.requested_spec(
            self.config.config, name, local_port, remote_port, remote_host, reverse
        )
        if ports_service.is_direct(self.provider(name).kind, spec):
            return ports_service.direct_info(spec, name, from_config)
        target = await self.ssh_target(name)
        return await ports_service.add_port(self.layout, target, name, spec)

    async def ports_add_defaults(self, machine: str | None = None) -> PortsResult:
        """Start every forward orch.toml declares for the machine."""
        name = self.machine_name(machine)
        for spec in self._forwards(name):
            await self.ports_add(
                spec.local_port, spec.remote_port, spec.remote_host, name, spec.reverse
            )
        return await self.ports_list(name)

    async def ports_remove(
        self, port: int, machine: str | None = None, reverse: bool = False
    ) -> PortsResult:
        """Stop forwarding local `port` (with `reverse`: the machine's `port`)."""
        from sidecar.ssh.ports_service import remove_port

        name = self.machine_name(machine)
        await remove_port(self.layout, await self._alias(name), name, port, reverse)
        return await self.ports_list(name)

    def revive_agent(self) -> bool:
        """Start the orch agent again if it died with syncs or forwards to bring back."""
        from sidecar import agent_client as client

        if not client.enabled():
            return False
        try:
            return client.revive_if_wanted(self.layout)
        except client.AgentUnavailable:
            return False  # the sync's status says it ended; nothing else to do here

    # The orch agent's watched status, for the language server (a thin client of it).
    STATUS_SILENCE_S = 15.0  # the agent sends a heartbeat every few seconds

    def agent_enabled(self) -> bool:
        from sidecar import agent_client

        return agent_client.enabled()

    async def status_events(self, machine: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """The project's `orch status` as the agent pushes it (the current one first, then
        every change); the agent is started (or an older one replaced) first. Ends when the
        agent goes away; raises OrchError when it cannot be reached."""
        from sidecar import agent_calls, agent_client

        try:
            paths, _ = await asyncio.to_thread(agent_client.ensure, self.layout)
            request = {"op": "subscribe", "cwd": str(self.cwd), "machine": machine}
            async for event in agent_calls.subscribe(paths, request, self.STATUS_SILENCE_S):
                if event.get("event") == "status":
                    yield event["status"]
        except agent_client.AgentUnavailable as exc:
            raise OrchError(str(exc), hint="it is started again by the next request") from None

    async def agent_status(self, machine: str | None = None, fresh: bool = False) -> dict[str, Any]:
        """The project's status from the agent's watch (`fresh`: read anew there)."""
        from sidecar import agent_client

        request = {"op": "status", "cwd": str(self.cwd), "machine": machine, "fresh": fresh}
        request["lenient"] = True  # an unknown machine is a status saying so, not an error
        paths = agent_client.agent_paths(self.layout)
        timeout = 4 * self.read_timeout_s
        try:
            try:
                reply = await agent_client.acall(paths, request, timeout=timeout)
            except agent_client.AgentUnavailable:  # not running (or dying): start it, once
                paths, _ = await asyncio.to_thread(agent_client.ensure, self.layout)
                reply = await agent_client.acall(paths, request, timeout=timeout)
        except agent_client.AgentUnavailable as exc:
            raise OrchError(str(exc), hint="it is started again by the next request") from None
        return dict(reply["status"])

    async def agent_call(
        self,
        method: str,
        machine: str | None = None,
        params: dict[str, Any] | None = None,
        progress: Progress | None = None,
        *,
        env: bool = False,
    ) -> Any:
        """Run facade `method` in the orch agent, over its one connection per machine (the
        language server's commands); its result as JSON, its OrchError raised here as the
        same class. The agent is started when none answers (the request was not sent then);
        one lost after it was sent is an error, not sent twice (it may have run). `env`:
        only if the agent runs with this process's settings (else `EnvDiffers`)."""
        from sidecar import agent_calls
        from sidecar import agent_client as client

        request: dict[str, Any] = {
            "op": "call",
            "project": str(self.cwd),
            "machine": machine,
            "method": method,
            "params": params or {},
        }
        if env:
            request["env"] = client.env_key()
        timeout = agent_calls.CALL_TIMEOUTS_S[method] + agent_calls.CALL_GRACE_S
        paths = client.agent_paths(self.layout)
        try:
            try:
                reply = await agent_calls.arequest(
                    paths, request, timeout=timeout, progress=progress
                )
            except agent_calls.AgentDown:  # not running (or dying): start it, once
                paths, _ = await asyncio.to_thread(client.ensure, self.layout)
                reply = await agent_calls.arequest(
                    paths, request, timeout=timeout, progress=progress
                )
        except client.AgentUnavailable as exc:
            raise OrchError(
                f"{method}: {exc}", hint="see `orch status` for what happened, then try again"
            ) from None
        return reply.get("result")

    async def run_call(
        self,
        method: str,
        machine: str | None = None,
        params: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> Any:
        """One method of the orch agent's allow-list (`sidecar.agent.calls.CALLS`, checked
        parameters, bounded): run in the agent (its result as JSON) or, with
        `ORCH_NO_AGENT=1`, here (as the facade returns it). The CLI's one switch
        (`sidecar.cli.dispatch` turns either into the same result model)."""
        if self.agent_enabled():
            from sidecar import agent_calls

            try:
                return await self.agent_call(method, machine, params, progress, env=True)
            except agent_calls.EnvDiffers:
                pass  # the agent has other settings (AWS_PROFILE…): run it here instead
        from sidecar.agent.calls import invoke

        return await invoke(self, method, machine, params or {}, progress or (lambda _m: None))

    async def run_logs(
        self,
        name: str,
        tail: int | None = None,
        follow: bool = False,
        machine: str | None = None,
        on: str | None = None,
    ) -> AsyncIterator[str]:
        """`jobs_stream` as `run_call` runs a call: streamed by the orch agent (which goes on
        after its own crash), or here with `ORCH_NO_AGENT=1` or other settings than the
        agent's."""
        if self.agent_enabled():
            from sidecar import agent_calls

            stream = self.agent_follow(
                name, tail, machine, follow=follow, on=on, archived=True, env=True
            )
            try:
                async for chunk in stream:
                    yield chunk
                return
            except agent_calls.EnvDiffers:  # (said before the first chunk)
                pass
        async for chunk in self.jobs_stream(name, tail, follow, machine, on):
            yield chunk

    async def agent_follow(
        self,
        name: str,
        tail: int | None = None,
        machine: str | None = None,
        *,
        follow: bool = True,
        on: str | None = None,
        archived: bool = False,
        env: bool = False,
    ) -> AsyncIterator[str]:
        """`jobs_follow` (with `archived`: `jobs_stream`, as `orch logs` reads) run in the orch
        agent: the job's log as text chunks until it ends, over the agent's connection (the
        language server's `orch/log`, `orch logs`). If the agent dies mid-stream a new one
        goes on from the byte the last chunk ended at (`agent_calls.follow_log`). `env`:
        only with this process's settings (else EnvDiffers, before any chunk)."""
        from sidecar import agent_calls
        from sidecar import agent_client as client

        request = agent_calls.follow_request(
            str(self.cwd), name, tail, machine, follow=follow, on=on, archived=archived, env=env
        )
        try:
            async for text in agent_calls.follow_log(self.layout, request, self.STATUS_SILENCE_S):
                yield text
        except client.AgentUnavailable as exc:
            raise OrchError(str(exc), hint=agent_calls.FOLLOW_HINT.format(name=name)) from None

    def poke_agent(self) -> None:
        """Tell a running agent that something may have changed (its status reads anew)."""
        from sidecar import agent_client as client

        paths = client.agent_paths(self.layout)
        if client.enabled() and client.alive(paths):
            with contextlib.suppress(client.AgentUnavailable, OSError, ValueError):
                client.call(paths, {"op": "poke"}, timeout=1.0)

    async def host_forward_owner(self, machine: str | None = None) -> bool:
        """Own the machine's forwards in this process (the sidecar does this while it runs);
        False when another process already owns them (requests then go to it)."""
        from sidecar.ssh.forwarder import ForwardOwner

        name = self.machine_name(machine)
        if name in self._forward_owners:
            return True
        owner = ForwardOwner(self.layout, self.pool, await self.ssh_target(name), name)
        if not await owner.start():
            return False
        self._forward_owners[name] = owner
        return True

    def forget_host_key(self, name: str) -> str:
        """Unpin a machine's host key (after the user checked the new one); returns the alias."""
        from sidecar.ssh import keys

        alias = name
        if name in self.config.config.machine_names():
            alias = self.provider(name).alias
        if not keys.unpin_host_key(self.layout, alias):
            raise NotFound(
                f"no host key is pinned for {name!r}", hint="see the pinned keys: orch status"
            )
        return alias


def _with_capabilities(info: MachineInfo, provider: Provider) -> MachineInfo:
    info.capabilities = provider.capabilities
    price = getattr(provider.spec, "price_per_hour", None)  # a price set in orch.toml
    if price is not None and info.price_per_hour is None:
        info.price_per_hour = price
        if info.state == "running" and info.uptime_s is not None:
            info.cost_so_far = round(price * info.uptime_s / 3600.0, 4)
    return info
