"""The instance profile renderers (names, trust, least-privilege policies) and the wait for a
fresh profile to become usable by RunInstances."""

from __future__ import annotations

import re
from typing import Any

import pytest

from remote_config import ec2, ec2_iam
from sidecar.errors import CloudConfigError


def test_profile_names_are_valid_iam_names() -> None:
    assert ec2_iam.profile_name("proj", "big") == "orch-proj-big"
    long = ec2_iam.profile_name("p" * 60, "gpu")
    odd = ec2_iam.profile_name("my proj/x", "gpu")
    for name in (long, odd):
        assert len(name) <= 64 and re.fullmatch(r"[\w+=,.@-]+", name), name
    assert long != ec2_iam.profile_name("p" * 60, "gpu2")  # cut names stay unique


def test_role_policy_grants_only_what_is_on() -> None:
    ssm = ec2_iam.role_policy(True, None, "eu-west-1")["Statement"]
    assert [s["Sid"] for s in ssm] == ["OrchSsmSession"]
    assert not any(a.startswith(("logs:", "ec2:", "s3:")) for a in ssm[0]["Action"])
    logs = ec2_iam.role_policy(False, "/orch/proj", "eu-west-1")["Statement"]
    assert logs == [
        {
            "Sid": "OrchJobLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": "arn:aws:logs:eu-west-1:*:log-group:/orch/proj:*",
        }
    ]
    with pytest.raises(ValueError):
        ec2_iam.role_policy(False, None, "eu-west-1")
    trust = ec2_iam.trust_policy()["Statement"][0]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_the_laptop_may_create_only_orchs_own_roles() -> None:
    statement = ec2_iam.laptop_statement()
    assert all("/orch/orch-*" in r for r in statement["Resource"])
    full = ec2.iam_policy("ssm", create_profile=True)
    assert "iam:CreateRole" in ec2.policy_actions(full)
    assert "iam:CreateRole" not in ec2.policy_actions(ec2.iam_policy("ssm"))


class _Aws:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def call(self, service: str, op: str, **kw: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise CloudConfigError(
                "AWS refused ec2:RunInstances: Value (orch-p-m) for parameter "
                "iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
                code="InvalidParameterValue",
            )
        return {"Instances": [{"InstanceId": "i-1"}]}


class _Provider:
    def __init__(self, failures: int) -> None:
        self.aws = _Aws(failures)
        self.poll_s = 0.0


async def test_run_instances_waits_for_a_fresh_profile() -> None:
    from sidecar.machines.ec2.launch import PROFILE_WAIT_TRIES, _run_instances

    request = {"IamInstanceProfile": {"Name": "orch-p-m"}}
    provider = _Provider(failures=3)
    assert (await _run_instances(provider, request))["Instances"][0]["InstanceId"] == "i-1"  # type: ignore[arg-type]
    assert provider.aws.calls == 4
    stuck = _Provider(failures=PROFILE_WAIT_TRIES)
    with pytest.raises(CloudConfigError, match="Instance Profile"):
        await _run_instances(stuck, request)  # type: ignore[arg-type]
    other = _Provider(failures=1)
    with pytest.raises(CloudConfigError):  # no profile in the request: not retried
        await _run_instances(other, {})  # type: ignore[arg-type]
    assert other.aws.calls == 1
