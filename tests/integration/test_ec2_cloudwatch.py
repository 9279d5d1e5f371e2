"""CloudWatch job logs against moto's server: `orch up` makes the log group (retention, tags)
and an instance profile that may write to it; the job's start-script set-up installs the
shipper, which (run on "the machine": here, with HOME in a temp folder) reads the instance
role's credentials from a stand-in IMDSv2 service, signs its requests itself and ships
run.log, rotation included; after `orch down --terminate`, `orch logs NAME` reads the log
from CloudWatch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from remote_config import ec2_iam, ec2_logs
from tests.imds import imds
from tests.integration.test_ec2_moto import _boto, _orch, _toml, no_handshake  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration


def _machine_job(home: Path, name: str, started: int) -> Path:
    job = home / "logs" / name
    job.mkdir(parents=True)
    (job / "meta").write_text(f"started={started}\nboot=b\n")
    return job


def _ship(home: Path, job: Path, setup: str) -> subprocess.CompletedProcess[str]:
    """What the job's start script and wrapper do on the machine: install, then ship."""
    env = {**os.environ, "HOME": str(home), "D": str(job)}
    subprocess.run(["sh", "-c", setup], env=env, check=True, timeout=30)
    shipper = home / ec2_logs.SHIPPER_DIR / ec2_logs.SHIPPER_FILE
    return subprocess.run(
        [sys.executable, str(shipper), str(job)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.usefixtures("no_handshake")
async def test_job_logs_outlive_the_machine(
    aws_env: str, project: Path, orch_home: Path, tmp_path: Path
) -> None:
    with imds() as service:
        toml = _toml(
            "cloudwatch_logs = true\nlog_retention_days = 7\n"
            f'metadata_url = "{service.url}"\nlogs_endpoint_url = "{aws_env}"\n'
        )
        orch = await _orch(project, toml)
        steps: list[str] = []
        await orch.up(progress=steps.append)
        logs = _boto("logs")
        [group] = logs.describe_log_groups(logGroupNamePrefix="/orch/proj")["logGroups"]  # type: ignore[attr-defined]
        assert group["logGroupName"] == "/orch/proj" and group["retentionInDays"] == 7
        assert "created log group /orch/proj" in steps
        # the instance may write there (and nothing else): orch made its profile
        iam = _boto("iam")
        doc = iam.get_role_policy(RoleName="orch-proj-big", PolicyName=ec2_iam.ROLE_POLICY_NAME)  # type: ignore[attr-defined]
        policy = doc["PolicyDocument"]
        policy = json.loads(policy) if isinstance(policy, str) else policy
        [statement] = policy["Statement"]
        assert statement["Resource"] == "arn:aws:logs:ap-northeast-1:*:log-group:/orch/proj:*"

        home = tmp_path / "machine"
        job = _machine_job(home, "train", 1796533200)
        (job / "run.log.1").write_text("epoch 1\nepoch 2\n")  # rotated away already
        (job / "run.log").write_text("epoch 3\nloss 0.1\n" + "x" * 10 + "\nlast line, no newline")
        (job / "result").write_text("exit_code=0\nended=1796533300\n")
        shipped = _ship(home, job, orch.provider().job_setup("train"))
        assert shipped.returncode == 0, shipped.stderr + (
            (job / "logship.err").read_text() if (job / "logship.err").exists() else ""
        )
        events = logs.get_log_events(  # type: ignore[attr-defined]
            logGroupName="/orch/proj", logStreamName="big/train/1796533200", startFromHead=True
        )["events"]
        assert [e["message"] for e in events] == [
            "epoch 3",
            "loss 0.1",
            "x" * 10,
            "last line, no newline",
        ]

    down = await orch.down(terminate=True)
    assert "terminated" in (down.detail or "")
    again = await _orch(project, toml)
    text = await again.jobs_logs("train")
    assert text == "epoch 3\nloss 0.1\nxxxxxxxxxx\nlast line, no newline\n"
    assert await again.jobs_logs("train", tail=1) == "last line, no newline\n"


def test_shipper_follows_a_running_job_and_its_rotation(tmp_path: Path, aws_env: str) -> None:
    """Lines written while it runs, and a rotation between two reads, all arrive once."""
    from sidecar.machines.ec2.log_shipper import Shipper

    logs = _boto("logs")
    logs.create_log_group(logGroupName="/orch/t")  # type: ignore[attr-defined]
    with imds() as service:
        job = _machine_job(tmp_path, "j", 5)
        config = ec2_logs.shipper_config(
            region="ap-northeast-1",
            group="/orch/t",
            machine="m",
            job="j",
            metadata_url=service.url,
            endpoint=aws_env,
        )
        shipper = Shipper(job, config)
        (job / "run.log").write_text("one\ntw")
        shipper.send(shipper.read_new())
        (job / "run.log").write_text("one\ntwo\nthree\n")
        shipper.send(shipper.read_new())
        with (job / "run.log").open("a") as log:
            log.write("three-and-a-half\n")  # written just before the rotation
        shutil.copy(job / "run.log", job / "run.log.1")  # the wrapper's rotation: copy,
        (job / "run.log").write_text("four\n")  # then truncate (the job keeps appending)
        shipper.send(shipper.read_new())
        assert ("GET", "/latest/meta-data/iam/security-credentials/orch-proj-big") in (
            service.requests
        )
    events = logs.get_log_events(logGroupName="/orch/t", logStreamName="m/j/5")["events"]  # type: ignore[attr-defined]
    assert [e["message"] for e in events] == ["one", "two", "three", "three-and-a-half", "four"]


@pytest.mark.usefixtures("no_handshake")
async def test_turning_logs_on_later_attaches_a_profile(
    aws_env: str, project: Path, orch_home: Path
) -> None:
    await (await _orch(project, _toml())).up()
    [inst] = [i for r in _boto("ec2").describe_instances()["Reservations"] for i in r["Instances"]]  # type: ignore[attr-defined]
    assert "IamInstanceProfile" not in inst
    steps: list[str] = []
    await (await _orch(project, _toml("cloudwatch_logs = true\n"))).up(progress=steps.append)
    assert f"attaching instance profile orch-proj-big to {inst['InstanceId']}" in steps
    [assoc] = _boto("ec2").describe_iam_instance_profile_associations()[  # type: ignore[attr-defined]
        "IamInstanceProfileAssociations"
    ]
    assert assoc["InstanceId"] == inst["InstanceId"]
    assert assoc["IamInstanceProfile"]["Arn"].endswith("instance-profile/orch/orch-proj-big")
