"""The on-demand price table orch ships for EC2 (Linux, shared tenancy, $/hour) and cost maths.

Source: the public "Amazon EC2 On-Demand Pricing" page (aws.amazon.com/ec2/pricing/on-demand/),
Linux column, as of PRICES_DATE. The figures were written down without access to the page
(this project's machines have no network) and are not re-checked yet: verify them against
the page before trusting a total. AWS changes prices rarely but does
change them, and EBS storage (gp3 ~$0.08/GB-month in us-east-1) is not included: the table is
an estimate for spotting forgotten machines, not a bill. Spot prices are not in the table;
orch asks `describe_spot_price_history` for them.
"""

from __future__ import annotations

PRICES_DATE = "2024-06-01"
PRICES_SOURCE = "aws.amazon.com/ec2/pricing/on-demand/ (Linux, on-demand, shared tenancy)"

# us-east-1 prices; other regions are listed where they differ.
_US_EAST_1: dict[str, float] = {
    "t3.micro": 0.0104,
    "t3.small": 0.0208,
    "t3.medium": 0.0416,
    "t3.large": 0.0832,
    "t3.xlarge": 0.1664,
    "t3.2xlarge": 0.3328,
    "t4g.medium": 0.0336,
    "t4g.large": 0.0672,
    "t4g.xlarge": 0.1344,
    "t4g.2xlarge": 0.2688,
    "m5.large": 0.096,
    "m5.xlarge": 0.192,
    "m5.2xlarge": 0.384,
    "m5.4xlarge": 0.768,
    "m6i.large": 0.096,
    "m6i.xlarge": 0.192,
    "m6i.2xlarge": 0.384,
    "m6i.4xlarge": 0.768,
    "m7i.large": 0.1008,
    "m7i.xlarge": 0.2016,
    "m7i.2xlarge": 0.4032,
    "c5.large": 0.085,
    "c5.xlarge": 0.17,
    "c5.2xlarge": 0.34,
    "c5.4xlarge": 0.68,
    "c6i.large": 0.085,
    "c6i.xlarge": 0.17,
    "c6i.2xlarge": 0.34,
    "r5.large": 0.126,
    "r5.xlarge": 0.252,
    "r5.2xlarge": 0.504,
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.4xlarge": 1.624,
    "g6.xlarge": 0.8048,
    "p3.2xlarge": 3.06,
}

_AP_NORTHEAST_1: dict[str, float] = {
    "t3.micro": 0.0136,
    "t3.small": 0.0272,
    "t3.medium": 0.0544,
    "t3.large": 0.1088,
    "t3.xlarge": 0.2176,
    "t3.2xlarge": 0.4352,
    "m5.large": 0.124,
    "m5.xlarge": 0.248,
    "m5.2xlarge": 0.496,
    "c5.large": 0.107,
    "c5.xlarge": 0.214,
    "c5.2xlarge": 0.428,
    "g4dn.xlarge": 0.71,
    "g4dn.2xlarge": 1.015,
    "g5.xlarge": 1.459,
    "p3.2xlarge": 4.194,
}

_EU_WEST_1: dict[str, float] = {
    "t3.micro": 0.0114,
    "t3.small": 0.0228,
    "t3.medium": 0.0456,
    "t3.large": 0.0912,
    "t3.xlarge": 0.1824,
    "t3.2xlarge": 0.3648,
    "m5.large": 0.107,
    "m5.xlarge": 0.214,
    "m5.2xlarge": 0.428,
    "c5.large": 0.096,
    "c5.xlarge": 0.192,
    "c5.2xlarge": 0.384,
    "g4dn.xlarge": 0.587,
    "g4dn.2xlarge": 0.838,
    "g5.xlarge": 1.123,
    "p3.2xlarge": 3.305,
}

ON_DEMAND: dict[str, dict[str, float]] = {
    "us-east-1": _US_EAST_1,
    "us-east-2": _US_EAST_1,  # same list prices as us-east-1
    "us-west-2": _US_EAST_1,
    "eu-west-1": _EU_WEST_1,
    "ap-northeast-1": _AP_NORTHEAST_1,
}


def on_demand_price(region: str, instance_type: str) -> float | None:
    """$/hour on demand from the shipped table; None when the table does not know it."""
    return ON_DEMAND.get(region, {}).get(instance_type)


def cost_so_far(price_per_hour: float | None, running_seconds: float | None) -> float | None:
    """Dollars spent on compute since the instance last started (None when unknown)."""
    if price_per_hour is None or running_seconds is None:
        return None
    return round(price_per_hour * max(0.0, running_seconds) / 3600.0, 4)


def describe_price(price: float | None, spot: bool) -> str:
    if price is None:
        return "price unknown"
    return f"${price:.4f}/h {'spot' if spot else 'on-demand'}"
