"""The instance profile orch makes for an SSM-reached machine that names none, against
moto's IAM and EC2: created once (role, trust, least-privilege inline policy, tags, path),
attached at launch, reused and completed idempotently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from remote_config import ec2_iam
from sidecar.machines.ec2.iam import ensure_instance_profile
from tests.integration.test_ec2_moto import _boto, _orch, _toml, no_handshake  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration


@pytest.fixture
def ssm_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("aws", "session-manager-plugin"):  # stand-ins: only their presence matters
        (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")


def _policy(iam: Any, name: str) -> dict[str, Any]:
    doc = iam.get_role_policy(RoleName=name, PolicyName=ec2_iam.ROLE_POLICY_NAME)["PolicyDocument"]
    return json.loads(doc) if isinstance(doc, str) else dict(doc)


@pytest.mark.usefixtures("no_handshake", "ssm_tools")
async def test_ssm_machine_gets_a_least_privilege_profile_made_once(
    aws_env: str, project: Path, orch_home: Path
) -> None:
    steps: list[str] = []
    orch = await _orch(project, _toml('reach = "ssm"\n'))
    await orch.up(progress=steps.append)
    iam = _boto("iam")
    name = "orch-proj-big"
    assert f"creating IAM instance profile {name}" in steps
    profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]  # type: ignore[attr-defined]
    assert profile["Path"] == "/orch/"
    assert [r["RoleName"] for r in profile["Roles"]] == [name]
    role = iam.get_role(RoleName=name)["Role"]  # type: ignore[attr-defined]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name)["Tags"]}  # type: ignore[attr-defined]
    assert tags["orch:project"] == "proj" and tags["orch:managed"] == "true"
    [statement] = _policy(iam, name)["Statement"]
    assert sorted(statement["Action"]) == sorted(ec2_iam.SSM_ACTIONS)  # nothing more
    [inst] = [i for r in _boto("ec2").describe_instances()["Reservations"] for i in r["Instances"]]  # type: ignore[attr-defined]
    assert inst["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/orch/{name}")

    # Idempotent: a second run (another laptop, a re-created machine) makes nothing new.
    again: list[str] = []
    provider = orch.provider()
    assert await ensure_instance_profile(provider, again.append) == name  # type: ignore[arg-type]
    assert again == []
    assert len(iam.list_instance_profiles()["InstanceProfiles"]) == 1  # type: ignore[attr-defined]


@pytest.mark.usefixtures("ssm_tools")
async def test_a_half_made_profile_is_completed_and_a_named_one_is_used_as_is(
    aws_env: str, project: Path, orch_home: Path
) -> None:
    iam = _boto("iam")
    # A crash between CreateInstanceProfile and CreateRole left an empty profile.
    iam.create_instance_profile(InstanceProfileName="orch-proj-big", Path="/orch/")  # type: ignore[attr-defined]
    orch = await _orch(project, _toml('reach = "ssm"\n'))
    provider = orch.provider()
    assert await ensure_instance_profile(provider, lambda _m: None) == "orch-proj-big"  # type: ignore[arg-type]
    profile = iam.get_instance_profile(InstanceProfileName="orch-proj-big")["InstanceProfile"]  # type: ignore[attr-defined]
    assert [r["RoleName"] for r in profile["Roles"]] == ["orch-proj-big"]
    assert (
        "ssm:UpdateInstanceInformation" in _policy(iam, "orch-proj-big")["Statement"][0]["Action"]
    )
    # With a profile named in orch.toml, orch creates none.
    assert not ec2_iam.needs_profile("ssm", False, "mine")
    assert ec2_iam.needs_profile("ssm", False, None) and ec2_iam.needs_profile(
        "public-ip", True, None
    )
    assert not ec2_iam.needs_profile("public-ip", False, None)
