"""Pure renderers for the IAM instance profile orch creates for an EC2 machine that needs one
(reach = "ssm", or job logs shipped to CloudWatch) when the user names none: its names, the
role's trust policy, the role's least-privilege inline policy, the tags, and the laptop-side
IAM actions that creating it needs.

No I/O: `sidecar/machines/ec2/iam.py` sends these.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from remote_config.ec2 import project_tags

ROLE_POLICY_NAME = "orch-instance"
PATH = "/orch/"

# What the SSM agent on the instance needs for Session Manager (and nothing else): register
# the instance, and open the control/data channels a session runs over.
SSM_ACTIONS = (
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
)
# What shipping job logs needs: streams and events in the machine's own log group only (the
# laptop creates the group and sets its retention).
LOGS_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams")


def profile_name(project: str, machine: str) -> str:
    """`orch-<project>-<machine>`: one role and instance profile per machine (IAM names are at
    most 64 characters and [\\w+=,.@-]; a longer or odder name is cut and made unique)."""
    raw = f"orch-{project}-{machine}"
    clean = re.sub(r"[^\w+=,.@-]", "-", raw)
    if clean == raw and len(clean) <= 64:
        return clean
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"{clean[:55]}-{digest}"


def trust_policy() -> dict[str, Any]:
    """Only EC2 may assume the role (for the instance it is attached to)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def role_policy(ssm: bool, log_group: str | None, region: str) -> dict[str, Any]:
    """The instance role's inline policy: Session Manager when `ssm`, and writing to
    `log_group` in `region` when logs are shipped. At least one of them must be on."""
    statements: list[dict[str, Any]] = []
    if ssm:
        ssm_statement = {"Sid": "OrchSsmSession", "Effect": "Allow", "Resource": "*"}
        statements.append({**ssm_statement, "Action": list(SSM_ACTIONS)})
    if log_group:
        statements.append(
            {
                "Sid": "OrchJobLogs",
                "Effect": "Allow",
                "Action": list(LOGS_ACTIONS),
                "Resource": f"arn:aws:logs:{region}:*:log-group:{log_group}:*",
            }
        )
    if not statements:
        raise ValueError("an instance profile is only made for SSM reach or CloudWatch logs")
    return {"Version": "2012-10-17", "Statement": statements}


def iam_tags(project: str, machine: str, owner: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in project_tags(project, machine, owner).items()]


def needs_profile(reach: str, cloudwatch_logs: bool, named: str | None) -> bool:
    """Whether orch makes a profile: SSM reach or shipped logs, and the user named none."""
    return named is None and (reach == "ssm" or cloudwatch_logs)


def laptop_statement() -> dict[str, Any]:
    """What the laptop's credentials need to create (and pass) orch's roles and profiles:
    only under orch's own IAM path, `/orch/`."""
    return {
        "Sid": "OrchInstanceProfile",
        "Effect": "Allow",
        "Action": [
            "iam:GetInstanceProfile",
            "iam:CreateInstanceProfile",
            "iam:AddRoleToInstanceProfile",
            "iam:TagInstanceProfile",
            "iam:CreateRole",
            "iam:TagRole",
            "iam:PutRolePolicy",
            "iam:PassRole",
        ],
        "Resource": [
            f"arn:aws:iam::*:role{PATH}orch-*",
            f"arn:aws:iam::*:instance-profile{PATH}orch-*",
        ],
    }
