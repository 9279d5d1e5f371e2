"""Fargate prices, a dated table (moto has no Pricing API and orch must work offline).

Source: https://aws.amazon.com/fargate/pricing/ (Linux, per second with a one-minute
minimum), the us-east-1 on-demand list prices as published since the January 2023 price cut
and as of `PRICES_AS_OF`. Fargate Spot prices float; the figures below are representative
for us-east-1 on that date (about 70% off on-demand), so Spot costs are estimates. Regions
not in the table use us-east-1's prices and say so. Update the table and the date together.
The figures were written down without access to that page (orch's build machines have no
network) and are not re-checked yet: verify them before relying on a cost.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2024-06-01"
PRICES_SOURCE = "https://aws.amazon.com/fargate/pricing/"
FREE_STORAGE_GB = 20
MINIMUM_SECONDS = 60


@dataclass(frozen=True)
class Rate:
    vcpu_hour: float
    gb_hour: float


# (region, architecture, capacity provider) -> rate; storage above 20 GB is extra.
_RATES: dict[tuple[str, str, str], Rate] = {
    ("us-east-1", "X86_64", "FARGATE"): Rate(0.04048, 0.004445),
    ("us-east-1", "ARM64", "FARGATE"): Rate(0.03238, 0.00356),
    ("us-east-1", "X86_64", "FARGATE_SPOT"): Rate(0.01244, 0.00137),
    ("us-east-1", "ARM64", "FARGATE_SPOT"): Rate(0.00996, 0.00109),
    ("eu-west-1", "X86_64", "FARGATE"): Rate(0.04048, 0.004445),
    ("eu-west-1", "ARM64", "FARGATE"): Rate(0.03238, 0.00356),
    ("eu-central-1", "X86_64", "FARGATE"): Rate(0.04656, 0.00511),
    ("eu-central-1", "ARM64", "FARGATE"): Rate(0.03725, 0.00409),
}
STORAGE_GB_HOUR = 0.000111


def rate(region: str, architecture: str, provider: str) -> tuple[Rate, bool]:
    """(rate, exact): `exact` is False when us-east-1's price stands in for the region's."""
    key = (region, architecture, provider)
    if key in _RATES:
        return _RATES[key], True
    return _RATES[("us-east-1", architecture, provider)], False


def hourly(cpu_units: int, memory_mib: int, storage_gb: int, r: Rate) -> float:
    extra = max(0, storage_gb - FREE_STORAGE_GB)
    return cpu_units / 1024 * r.vcpu_hour + memory_mib / 1024 * r.gb_hour + extra * STORAGE_GB_HOUR


def task_cost(seconds: float, cpu_units: int, memory_mib: int, storage_gb: int, r: Rate) -> float:
    """USD for one task that ran `seconds` (billed per second, at least one minute)."""
    billed = max(seconds, MINIMUM_SECONDS)
    return hourly(cpu_units, memory_mib, storage_gb, r) * billed / 3600
