"""Every orch-created EC2 instance the credentials can see, across projects and regions, so a
forgotten machine is found (`orch machines`) and stopped (`orch down --all`)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from remote_config import ec2 as render
from remote_config.ec2_prices import cost_so_far
from sidecar.machines.ec2.aws import Aws
from sidecar.machines.ec2.models import FleetEntry
from sidecar.machines.ec2.pricing import instance_price


async def all_regions(aws: Aws) -> list[str]:
    found = await aws.call("ec2", "describe_regions")
    return sorted(r["RegionName"] for r in found["Regions"])


async def list_fleet(aws: Aws, regions: list[str]) -> list[FleetEntry]:
    """orch-tagged instances (not terminated) in `regions`, oldest first per region."""
    per_region = await asyncio.gather(*(_region(aws, r) for r in regions))
    return [entry for entries in per_region for entry in entries]


async def _region(aws: Aws, region: str) -> list[FleetEntry]:
    found = await aws.call(
        "ec2", "describe_instances", region=region, Filters=render.fleet_filters()
    )
    out = []
    for reservation in found["Reservations"]:
        for inst in reservation["Instances"]:
            out.append(await _entry(aws, region, inst))
    return sorted(out, key=lambda e: (e.project or "", e.machine or "", e.instance_id))


async def _entry(aws: Aws, region: str, inst: dict[str, Any]) -> FleetEntry:
    tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
    state = inst["State"]["Name"]
    uptime = None
    if state == "running" and inst.get("LaunchTime"):
        launched = inst["LaunchTime"]
        if launched.tzinfo is None:
            launched = launched.replace(tzinfo=dt.UTC)
        uptime = max(0.0, (dt.datetime.now(dt.UTC) - launched).total_seconds())
    price, _ = await instance_price(aws, inst, region)
    return FleetEntry(
        region=region,
        instance_id=inst["InstanceId"],
        project=tags.get(render.TAG_PROJECT),
        machine=tags.get(render.TAG_MACHINE),
        owner=tags.get(render.TAG_OWNER),
        state=state,
        instance_type=inst.get("InstanceType", "?"),
        market="spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand",
        address=inst.get("PublicIpAddress") or inst.get("PrivateIpAddress"),
        uptime_s=None if uptime is None else round(uptime, 1),
        price_per_hour=price,
        cost_so_far=cost_so_far(price, uptime),
    )


async def stop_fleet(aws: Aws, entries: list[FleetEntry]) -> list[FleetEntry]:
    """Stop every running or pending entry; returns the ones that were stopped."""
    stopped = [e for e in entries if e.state in ("pending", "running")]
    by_region: dict[str, list[str]] = {}
    for entry in stopped:
        by_region.setdefault(entry.region, []).append(entry.instance_id)
    for region, ids in by_region.items():
        await aws.call("ec2", "stop_instances", region=region, InstanceIds=ids)
    return stopped
