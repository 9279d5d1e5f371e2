"""A machine's idle policy from its `[machines.X]` settings and its kind's capabilities.

Defaults come from what the kind declares, never from its name: idle stop is on (30 min) for
kinds that cost money and can stop themselves (`has_cost` and `has_idle_stop`), off for the
others (the local machine, an `ssh` host you own). `stop_action = "terminate"` is refused
for a kind that cannot terminate.
"""

from __future__ import annotations

import os

from remote_config.idle import DEFAULT_IDLE_STOP_S, DEFAULT_INTERVAL_S, IdlePolicy, parse_duration
from remote_config.model import IdleSettings
from sidecar.errors import ConfigFileError
from sidecar.machines.base import Capabilities

# Tests and demos shorten the check interval (seconds); users never need to.
INTERVAL_ENV = "ORCH_IDLE_INTERVAL"


def check_interval() -> float:
    raw = os.environ.get(INTERVAL_ENV)
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigFileError(
            f"{INTERVAL_ENV}={raw!r} is not a number of seconds", hint=f"unset {INTERVAL_ENV}"
        ) from None
    return max(0.1, value)


def default_on(caps: Capabilities) -> bool:
    return caps.has_cost and caps.has_idle_stop


def policy_for(name: str, settings: IdleSettings, caps: Capabilities) -> IdlePolicy:
    if settings.stop_action == "terminate" and not caps.can_terminate:
        raise ConfigFileError(
            f"machines.{name}.stop_action = 'terminate': this kind of machine cannot be terminated",
            hint="use stop_action = 'stop' (or remove the line)",
        )
    if settings.idle_stop is None:
        idle: float | None = DEFAULT_IDLE_STOP_S if default_on(caps) else None
    elif settings.idle_stop == "off":
        idle = None
    else:
        idle = parse_duration(settings.idle_stop)
    ttl = parse_duration(settings.ttl) if settings.ttl else None
    return IdlePolicy(
        idle_stop_s=idle, ttl_s=ttl, ttl_hard=settings.ttl_hard, interval_s=check_interval()
    )
