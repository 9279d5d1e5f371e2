"""The EC2 result types that cross the wire (re-exported by `sidecar.results`)."""

from __future__ import annotations

from pydantic import BaseModel


class FleetEntry(BaseModel):
    """One orch-created instance, as `orch machines` lists it."""

    region: str
    instance_id: str
    project: str | None
    machine: str | None
    owner: str | None
    state: str
    instance_type: str
    market: str
    address: str | None = None
    uptime_s: float | None = None
    price_per_hour: float | None = None
    cost_so_far: float | None = None
