"""The instance profile orch makes for an EC2 machine that needs one and names none (reach =
"ssm", or job logs shipped to CloudWatch): a role only EC2 may assume, with a least-privilege
inline policy, in an instance profile of the same name, both tagged like the instance and
under orch's own IAM path `/orch/`. Idempotent: an existing profile is reused, its role's
policy re-put so it always matches the machine's settings, and a half-made one (a crash
between two calls) completed. Shapes come from `remote_config/ec2_iam.py`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from remote_config import ec2_iam, ec2_logs
from sidecar.errors import CloudError
from sidecar.machines.base import Progress

if TYPE_CHECKING:
    from sidecar.machines.ec2.provider import EC2Provider


async def ensure_instance_profile(
    provider: EC2Provider, say: Progress, log_group: str | None = None
) -> str:
    """The name of the machine's instance profile, created (or completed) when needed."""
    spec = provider.spec
    name = ec2_iam.profile_name(provider.project, provider.name)
    tags = ec2_iam.iam_tags(provider.project, provider.name, await provider.owner())
    policy = ec2_iam.role_policy(spec.reach == "ssm", log_group, spec.region)
    profile = await _get(provider, "get_instance_profile", "InstanceProfile", name)
    if profile is None:
        say(f"creating IAM instance profile {name}")
        profile = await _create(
            provider,
            "create_instance_profile",
            "InstanceProfile",
            InstanceProfileName=name,
            Path=ec2_iam.PATH,
            Tags=tags,
        )
    if not await _get(provider, "get_role", "Role", name, key="RoleName"):
        await _create(
            provider,
            "create_role",
            "Role",
            RoleName=name,
            Path=ec2_iam.PATH,
            AssumeRolePolicyDocument=json.dumps(ec2_iam.trust_policy()),
            Description=f"orch machine {provider.name} of project {provider.project}",
            Tags=tags,
        )
    # Always re-put: turning SSM or logs on or off changes what the role may do.
    await provider.aws.call(
        "iam",
        "put_role_policy",
        RoleName=name,
        PolicyName=ec2_iam.ROLE_POLICY_NAME,
        PolicyDocument=json.dumps(policy),
    )
    if name not in [r.get("RoleName") for r in profile.get("Roles", [])]:
        await provider.aws.call(
            "iam", "add_role_to_instance_profile", InstanceProfileName=name, RoleName=name
        )
    return name


async def ensure_attached(provider: EC2Provider, inst: dict[str, Any], say: Progress) -> None:
    """An instance launched before it needed a profile (SSM reach or CloudWatch logs turned
    on later) gets orch's, attached while it runs."""
    spec = provider.spec
    if inst.get("IamInstanceProfile") or not ec2_iam.needs_profile(
        spec.reach, spec.cloudwatch_logs, spec.instance_profile
    ):
        return
    group = None
    if spec.cloudwatch_logs:
        group = spec.log_group or ec2_logs.default_log_group(provider.project)
    name = await ensure_instance_profile(provider, say, group)
    say(f"attaching instance profile {name} to {inst['InstanceId']}")
    await provider.aws.call(
        "ec2",
        "associate_iam_instance_profile",
        IamInstanceProfile={"Name": name},
        InstanceId=inst["InstanceId"],
    )


async def _get(
    provider: EC2Provider, op: str, field: str, name: str, key: str = "InstanceProfileName"
) -> dict[str, Any] | None:
    try:
        found = await provider.aws.call("iam", op, **{key: name})
    except CloudError as exc:
        if exc.code == "NoSuchEntity":
            return None
        raise
    return dict(found[field])


async def _create(provider: EC2Provider, op: str, field: str, **kw: Any) -> dict[str, Any]:
    """Create, or read back what a concurrent `orch up` created a moment ago."""
    try:
        return dict((await provider.aws.call("iam", op, **kw))[field])
    except CloudError as exc:
        if exc.code != "EntityAlreadyExists":
            raise
    key = "RoleName" if field == "Role" else "InstanceProfileName"
    get = "get_role" if field == "Role" else "get_instance_profile"
    found = await _get(provider, get, field, str(kw[key]), key=key)
    return found or {}
