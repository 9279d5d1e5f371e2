"""How an EC2 machine stops itself: the idle agent's stop hook for `ec2` (an
instance-initiated shutdown, `remote_config.ec2.idle_stop_hook`) and the instance attribute
that turns that shutdown into a stop or a terminate (`stop_action`), set at launch and
corrected by `orch up` on an instance launched before `stop_action` changed.

Importing this module registers the hook (the provider imports it).
"""

from __future__ import annotations

from typing import Any

from remote_config import ec2 as render
from sidecar.idle.hooks import register_stop_hook
from sidecar.machines.base import MachineInfo, Progress, Provider
from sidecar.machines.ec2.aws import Aws


async def ensure_shutdown_behavior(aws: Aws, iid: str, stop_action: str, say: Progress) -> None:
    """Make `shutdown -h` on the machine (the idle agent's stop) do `stop_action`."""
    attr = await aws.call(
        "ec2",
        "describe_instance_attribute",
        InstanceId=iid,
        Attribute="instanceInitiatedShutdownBehavior",
    )
    have = (attr.get("InstanceInitiatedShutdownBehavior") or {}).get("Value")
    if have != stop_action:
        say(f"shutdown behaviour {have} -> {stop_action} (stop_action)")
        # The Attribute/Value form (valid for this attribute in the EC2 API).
        await aws.call(
            "ec2",
            "modify_instance_attribute",
            InstanceId=iid,
            Attribute="instanceInitiatedShutdownBehavior",
            Value=stop_action,
        )


def _idle_stop(provider: Provider, info: MachineInfo, stop_action: str) -> dict[str, Any]:
    return render.idle_stop_hook(stop_action)


register_stop_hook("ec2", _idle_stop)
