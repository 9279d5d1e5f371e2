"""What an EC2 instance costs per hour: the live spot price for spot instances (cached for a
few minutes: the language server asks often), else orch's dated on-demand table."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from remote_config.ec2_prices import PRICES_DATE, on_demand_price
from sidecar.errors import OrchError
from sidecar.machines.ec2.aws import Aws

SPOT_PRICE_TTL_S = 300.0
_spot_prices: dict[tuple[str, str, str], tuple[float, float]] = {}


async def instance_price(aws: Aws, inst: dict[str, Any], region: str) -> tuple[float | None, str]:
    """($/h, where it came from): the live spot price for spot instances, else the table."""
    itype = inst.get("InstanceType", "")
    if inst.get("InstanceLifecycle") == "spot":
        query: dict[str, Any] = {
            "InstanceTypes": [itype],
            "ProductDescriptions": ["Linux/UNIX"],
            "StartTime": dt.datetime.now(dt.UTC),
            "MaxResults": 1,
        }
        zone = inst.get("Placement", {}).get("AvailabilityZone") or ""
        if zone:
            query["AvailabilityZone"] = zone
        key = (region, itype, zone)
        cached = _spot_prices.get(key)
        if cached and time.monotonic() - cached[0] < SPOT_PRICE_TTL_S:
            return cached[1], "live spot price"
        try:
            history = await aws.call("ec2", "describe_spot_price_history", region=region, **query)
            prices = history.get("SpotPriceHistory", [])
            if prices:
                _spot_prices[key] = (time.monotonic(), float(prices[0]["SpotPrice"]))
                return _spot_prices[key][1], "live spot price"
        except OrchError:
            pass  # fall back to the table: a price is a hint, not worth failing status for
    price = on_demand_price(region, itype)
    if price is None:
        return None, f"{itype} in {region} is not in orch's price table"
    return price, f"orch's on-demand price table of {PRICES_DATE}"
