"""`orch machines`: every machine orch knows of, of every kind, with what it costs.

The rows are this project's machines from orch.toml (whatever their kind: local, ssh, EC2,
codespaces), each from its provider's status, plus every orch-tagged EC2 instance the AWS
credentials see (machines of other projects, forgotten ones). An EC2 machine of this project
appears once: its tagged instance fills in its row. A machine whose status fails is listed
as `unknown` with the reason; nothing here fails the whole list.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from sidecar.machines.base import MachineInfo
from sidecar.machines.ec2.models import FleetEntry
from sidecar.machines.spend import CostStatus, Sighting, sighting


class MachineEntry(BaseModel):
    """One row of `orch machines`."""

    project: str | None
    machine: str | None  # its name in orch.toml (the `orch:machine` tag for other projects)
    kind: str
    state: str
    configured: bool = Field(description="One of this project's orch.toml machines.")
    type: str | None = None  # instance type (EC2), machine type (codespaces)
    market: str | None = None
    region: str | None = None
    instance_id: str | None = None
    address: str | None = None
    uptime_s: float | None = None
    price_per_hour: float | None = None  # USD
    cost_so_far: float | None = None  # USD since it last started
    detail: str | None = None


class MachinesOverview(BaseModel):
    """`orch machines`: the rows, the spend today, and what could not be looked at."""

    machines: list[MachineEntry] = Field(default_factory=list)
    cost: CostStatus | None = None
    notes: list[str] = Field(default_factory=list)


def run_key(project: str | None, machine: str | None, instance_id: str | None = None) -> str:
    """The ledger's name for a machine (the same for an EC2 machine seen either way)."""
    if project and machine:
        return f"{project}/{machine}"
    return f"ec2:{instance_id}"


def aws_configured(env: dict[str, str] | None = None, home: Path | None = None) -> bool:
    """Whether AWS credentials are set up without asking the network (no IMDS probe)."""
    env = dict(os.environ) if env is None else env
    if any(env.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_ENDPOINT_URL")):
        return True
    aws = (home or Path.home()) / ".aws"
    return (aws / "credentials").exists() or (aws / "config").exists()


def entry_of(project: str, info: MachineInfo) -> MachineEntry:
    return MachineEntry(
        project=project,
        machine=info.name,
        kind=info.kind,
        state=info.state,
        configured=True,
        type=info.instance_type or info.machine_type,
        market=info.market,
        address=info.address,
        uptime_s=info.uptime_s,
        price_per_hour=info.price_per_hour,
        cost_so_far=info.cost_so_far,
        detail=info.detail,
    )


def fleet_entry(e: FleetEntry) -> MachineEntry:
    return MachineEntry(
        project=e.project,
        machine=e.machine,
        kind="ec2",
        state=e.state,
        configured=False,
        type=e.instance_type,
        market=e.market,
        region=e.region,
        instance_id=e.instance_id,
        address=e.address,
        uptime_s=e.uptime_s,
        price_per_hour=e.price_per_hour,
        cost_so_far=e.cost_so_far,
    )


def merge(
    project: str, configured: Sequence[MachineEntry], fleet: Sequence[FleetEntry]
) -> list[MachineEntry]:
    """This project's rows (an EC2 machine's live instance fills its row in), then the
    tagged instances of other projects or machines no longer in orch.toml."""
    rows = list(configured)
    by_name = {(r.machine, r.kind): i for i, r in enumerate(rows)}
    for inst in fleet:
        i = by_name.get((inst.machine, "ec2")) if inst.project == project else None
        if i is not None and inst.state != "terminated" and rows[i].instance_id is None:
            own = rows[i]
            rows[i] = own.model_copy(
                update={
                    "region": inst.region,
                    "instance_id": inst.instance_id,
                    "type": own.type or inst.instance_type,
                    "market": own.market or inst.market,
                }
            )
        else:
            rows.append(fleet_entry(inst))
    return rows


def sightings(rows: Sequence[MachineEntry]) -> list[Sighting]:
    out = []
    for row in rows:
        key = run_key(row.project, row.machine, row.instance_id)
        seen = sighting(key, row.state, row.uptime_s, row.price_per_hour)
        if seen is not None:
            out.append(seen)
    # One sighting per machine (an instance listed twice, in a row of its own project too).
    return list({s.key: s for s in out}.values())
