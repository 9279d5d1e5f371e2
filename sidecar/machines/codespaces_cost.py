"""What a codespace costs: GitHub's published compute price per core count (pure data).

GitHub bills codespaces compute by the hour at a fixed price per core count (the API does not
report prices). Source: "About billing for GitHub Codespaces",
https://docs.github.com/en/billing/concepts/product-billing/github-codespaces (pricing table
as published in 2025: $0.18/h for 2 cores, doubling with the cores; storage $0.07 per GB-month
is billed separately and not counted here). Update PRICES_AS_OF with the table.
"""

from __future__ import annotations

PRICES_AS_OF = "2025-06"
PRICE_SOURCE = "https://docs.github.com/en/billing/concepts/product-billing/github-codespaces"
USD_PER_HOUR_BY_CORES: dict[int, float] = {2: 0.18, 4: 0.36, 8: 0.72, 16: 1.44, 32: 2.88}


def price_per_hour(cpus: int | None) -> float | None:
    """USD per hour of compute for a machine with `cpus` cores (None: unknown)."""
    if cpus is None:
        return None
    if cpus in USD_PER_HOUR_BY_CORES:
        return USD_PER_HOUR_BY_CORES[cpus]
    return round(0.09 * cpus, 4) if cpus > 0 else None


def cost(cpus: int | None, seconds: float) -> float | None:
    rate = price_per_hour(cpus)
    return None if rate is None else round(rate * max(0.0, seconds) / 3600.0, 4)
