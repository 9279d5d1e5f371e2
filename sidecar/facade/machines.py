"""The facade's machines: bring one up or down, read its state, and see the whole fleet.

`up` (with its ssh config and idle agent) and `down` (refused while jobs run, unless forced),
the plans and warnings shown before creating or terminating, `machine_status`, the idle
agent's state, and `orch machines`: this project's machines of every kind and every
orch-tagged EC2 instance, with what each costs and the spend recorded today. The providers
(sidecar/machines/) do the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sidecar.errors import OrchError
from sidecar.facade.jobs import JobsFacade
from sidecar.facade.ssh import SshFacade
from sidecar.machines.base import MachineInfo, Progress, Provider, TerminatePlan
from sidecar.machines.overview import MachineList
from sidecar.results import (
    CostStatus,
    CreatePlan,
    FleetEntry,
    IdleStatus,
    MachineEntry,
    MachinesOverview,
)

if TYPE_CHECKING:
    from sidecar.machines.ec2.aws import Aws
    from sidecar.machines.spend import Sighting


class MachinesFacade(SshFacade, JobsFacade):
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


def _with_capabilities(info: MachineInfo, provider: Provider) -> MachineInfo:
    info.capabilities = provider.capabilities
    price = getattr(provider.spec, "price_per_hour", None)  # a price set in orch.toml
    if price is not None and info.price_per_hour is None:
        info.price_per_hour = price
        if info.state == "running" and info.uptime_s is not None:
            info.cost_so_far = round(price * info.uptime_s / 3600.0, 4)
    return info
