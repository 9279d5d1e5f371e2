"""Creating an EC2 machine: resolve the AMI, make (or reuse) its security group, generate its
host key, render user-data and send RunInstances (all shapes come from remote_config.ec2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.request
from typing import TYPE_CHECKING, Any

from remote_config import ec2 as render
from remote_config import ec2_ami, ec2_iam
from sidecar.errors import CloudConfigError, CloudError, OrchError
from sidecar.machines.base import Progress
from sidecar.machines.ec2 import cloudwatch
from sidecar.machines.ec2.iam import ensure_instance_profile
from sidecar.ssh import keys

if TYPE_CHECKING:
    from sidecar.machines.ec2.provider import EC2Provider

CHECKIP_URL = "https://checkip.amazonaws.com"


async def create_instance(provider: EC2Provider, say: Progress) -> dict[str, Any]:
    spec = provider.spec
    image_id = await resolve_ami(provider)
    say(f"image {image_id}")
    root_device = await _root_device(provider, image_id)
    groups = list(spec.security_group_ids) or [await ensure_security_group(provider, say)]
    profile = spec.instance_profile
    if ec2_iam.needs_profile(spec.reach, spec.cloudwatch_logs, profile):
        group = cloudwatch.log_group(provider) if spec.cloudwatch_logs else None
        profile = await ensure_instance_profile(provider, say, group)
    host_private, host_public = _host_key()
    user_data = render.render_user_data(
        render.UserDataSpec(
            user=spec.user,
            authorized_key=keys.public_line(provider.layout.client_key),
            host_private_key=host_private,
            host_public_key=host_public,
        )
    )
    # Pinned before the instance exists: the first handshake is already verified.
    keys.pin_host_key(provider.layout, provider.alias, host_public)
    launch = render.LaunchSpec(
        image_id=image_id,
        instance_type=spec.instance_type,
        user_data=user_data,
        tags=render.project_tags(provider.project, provider.name, await provider.owner()),
        extra_tags={"Name": provider.alias, **spec.tags},
        volume_gb=spec.volume_gb,
        volume_type=spec.volume_type,
        root_device=root_device,
        subnet_id=spec.subnet_id,
        security_group_ids=tuple(groups),
        availability_zone=spec.availability_zone,
        instance_profile=profile,
        spot=spec.spot,
        spot_max_price=spec.spot_max_price,
        shutdown_behavior=spec.stop_action,
    )
    inst = await run_with_capacity_retry(provider, launch, say)
    say(f"launched {inst['InstanceId']}")
    return inst


# Errors that mean "not here, not now": try another zone (then on-demand, if allowed).
CAPACITY_ERRORS = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "Unsupported",  # the type is not offered in that zone
    }
)


async def run_with_capacity_retry(
    provider: EC2Provider, launch: render.LaunchSpec, say: Progress
) -> dict[str, Any]:
    """RunInstances where AWS picks the zone; on a capacity error, in each other zone of the
    region (unless a subnet or zone pins it); then on demand with `fallback = "on-demand"`.
    Says everything it tried when nothing worked."""
    spec = provider.spec
    markets = [launch.spot]
    if launch.spot and spec.fallback == "on-demand":
        markets.append(False)
    tried: list[str] = []
    zones: list[str | None] = [launch.availability_zone]
    # A subnet lives in one zone, and a configured zone is the user's choice: no moving.
    movable = not spec.subnet_id and not spec.availability_zone
    for spot in markets:
        market = "spot" if spot else "on-demand"
        i = 0
        while i < len(zones):
            zone = zones[i]
            i += 1
            attempt = dataclasses.replace(launch, spot=spot, availability_zone=zone)
            try:
                result = await _run_instances(provider, render.run_instances_request(attempt))
                return dict(result["Instances"][0])
            except CloudError as exc:
                if exc.code not in CAPACITY_ERRORS:
                    raise
                tried.append(f"{market} in {zone or 'the zone AWS picked'}: {exc.code}")
                say(f"no {market} capacity in {zone or 'the zone AWS picked'} ({exc.code})")
            if movable and len(zones) == 1:
                zones += await _zones(provider)
    raise CloudError(
        f"no capacity for {spec.instance_type} in {spec.region}; tried: {'; '.join(tried)}",
        hint="try another instance_type or region"
        + ("" if not spec.spot or spec.fallback == "on-demand" else ", or fallback = 'on-demand'"),
        code="InsufficientInstanceCapacity",
    )


# A just-created instance profile takes a few seconds to be usable by EC2 (IAM is eventually
# consistent); RunInstances names it invalid meanwhile.
PROFILE_WAIT_TRIES = 20


async def _run_instances(provider: EC2Provider, request: dict[str, Any]) -> dict[str, Any]:
    for attempt in range(PROFILE_WAIT_TRIES):
        try:
            return dict(await provider.aws.call("ec2", "run_instances", **request))
        except CloudError as exc:
            fresh = "IamInstanceProfile" in request and "instance profile" in exc.message.lower()
            if not fresh or attempt == PROFILE_WAIT_TRIES - 1:
                raise
            await asyncio.sleep(provider.poll_s)
    raise AssertionError("unreachable")


async def _zones(provider: EC2Provider) -> list[str]:
    found = await provider.aws.call(
        "ec2",
        "describe_availability_zones",
        Filters=[{"Name": "state", "Values": ["available"]}],
    )
    return sorted(z["ZoneName"] for z in found["AvailabilityZones"])


async def resolve_ami(provider: EC2Provider) -> str:
    """The AMI id: as configured, or the latest of a named image from its public SSM
    parameter (remote_config/ec2_ami.py)."""
    spec = provider.spec
    name = ec2_ami.parameter(spec.ami, spec.instance_type)
    if name is None:
        return str(spec.ami)
    try:
        found = await provider.aws.call("ssm", "get_parameter", Name=name)
    except CloudError as exc:
        if exc.code != "ParameterNotFound":
            raise
        raise CloudConfigError(
            f"the public SSM parameter {name} does not exist in {spec.region}, so orch "
            "cannot find the image's latest AMI there",
            hint="set ami in orch.toml to an AMI id of that region ('ami-…'), or to another "
            "image: " + ", ".join(ec2_ami.IMAGES),
            code=exc.code,
        ) from None
    return str(found["Parameter"]["Value"])


async def _root_device(provider: EC2Provider, image_id: str) -> str:
    images = await provider.aws.call("ec2", "describe_images", ImageIds=[image_id])
    for image in images.get("Images", []):
        if image.get("RootDeviceName"):
            return str(image["RootDeviceName"])
    return "/dev/xvda"


def _host_key() -> tuple[str, str]:
    """A fresh ed25519 host key; the private half lives only in the user-data."""
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    private = key.export_private_key("openssh").decode()
    public = key.export_public_key("openssh").decode().split()
    return private, f"{public[0]} {public[1]}"


async def ensure_security_group(provider: EC2Provider, say: Progress) -> str:
    """orch's group for this machine: SSH from the caller's one address, or nothing (SSM)."""
    spec = provider.spec
    name = render.security_group_name(provider.project, provider.name)
    vpc_id = await _vpc_of(provider)
    filters = [{"Name": "group-name", "Values": [name]}]
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    found = await provider.aws.call("ec2", "describe_security_groups", Filters=filters)
    if found["SecurityGroups"]:
        group = found["SecurityGroups"][0]
        group_id = str(group["GroupId"])
    else:
        say(f"creating security group {name}")
        create: dict[str, Any] = {
            "GroupName": name,
            "Description": f"orch machine {provider.name} of project {provider.project}",
            "TagSpecifications": [
                {
                    "ResourceType": "security-group",
                    "Tags": [
                        {"Key": k, "Value": v}
                        for k, v in render.project_tags(
                            provider.project, provider.name, await provider.owner()
                        ).items()
                    ],
                }
            ],
        }
        if vpc_id:
            create["VpcId"] = vpc_id
        group_id = str(
            (await provider.aws.call("ec2", "create_security_group", **create))["GroupId"]
        )
        group = {"IpPermissions": []}
    cidr = None if spec.reach == "ssm" else await caller_cidr(spec.ssh_from)
    wanted = render.ingress_rules(spec.reach, cidr)
    if wanted and not _has_rule(group.get("IpPermissions", []), cidr):
        await provider.aws.call(
            "ec2", "authorize_security_group_ingress", GroupId=group_id, IpPermissions=wanted
        )
    return group_id


def _has_rule(permissions: list[dict[str, Any]], cidr: str | None) -> bool:
    for perm in permissions:
        if perm.get("FromPort") == 22:
            ranges = [r.get("CidrIp") for r in perm.get("IpRanges", [])]
            ranges += [r.get("CidrIpv6") for r in perm.get("Ipv6Ranges", [])]
            if cidr in ranges:
                return True
    return False


async def _vpc_of(provider: EC2Provider) -> str | None:
    if not provider.spec.subnet_id:
        return None  # the region's default VPC, where a group without VpcId goes
    found = await provider.aws.call("ec2", "describe_subnets", SubnetIds=[provider.spec.subnet_id])
    return str(found["Subnets"][0]["VpcId"])


async def caller_cidr(configured: str | None) -> str:
    """The one address SSH is opened to: `ssh_from`, else this computer's public address."""
    if configured:
        try:
            return render.caller_cidr(configured)
        except ValueError as exc:
            raise OrchError(f"ssh_from: {exc}", hint="give one address, e.g. 203.0.113.7") from None

    def fetch() -> str:
        with urllib.request.urlopen(CHECKIP_URL, timeout=5) as answer:
            return str(answer.read().decode().strip())

    try:
        return render.caller_cidr(await asyncio.to_thread(fetch))
    except (OSError, ValueError) as exc:
        raise CloudError(
            f"cannot find this computer's public address ({CHECKIP_URL}: {exc})",
            hint='set ssh_from = "YOUR.PUBLIC.IP" on the machine in orch.toml, '
            "or use reach = 'ssm'",
        ) from None
