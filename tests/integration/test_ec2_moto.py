"""The ec2 provider against moto's server (real HTTP, boto3 unmodified, AWS_ENDPOINT_URL):
create, idempotent up, stop, start, terminate, SSM reach, spot, errors, `orch machines`.

moto runs no sshd: these tests replace only the final SSH handshake (`_handshake`) and the
idle agent's install over SSH with no-ops; test_ec2_path.py runs the real handshake through a proxy command to a real sshd.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from remote_config import ec2 as render
from sidecar.app import Orchestrator
from sidecar.errors import (
    CloudConfigError,
    CloudCredentialsError,
    MachineNotRunning,
    MissingDependency,
)
from sidecar.ssh import keys
from tests.helpers import run_orch

pytestmark = pytest.mark.integration

SSM_AL2023 = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


def _toml(extra: str = "", region: str = "ap-northeast-1", name: str = "big") -> str:
    return (
        f'[project]\nname = "proj"\ndefault_machine = "{name}"\n'
        f'[machines.{name}]\nkind = "ec2"\nregion = "{region}"\ninstance_type = "t3.2xlarge"\n'
        f'volume_gb = 100\nssh_from = "203.0.113.7"\n{extra}'
    )


@pytest.fixture
def no_handshake(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    async def handshake(target: object) -> None:
        seen.append(getattr(target, "host", ""))

    async def no_agent(ctx: object, info: object) -> None:
        return None  # the idle agent needs the machine's sshd (test_ec2_path.py has one)

    monkeypatch.setattr("sidecar.machines.ec2.provider._handshake", handshake)
    monkeypatch.setattr("sidecar.idle.service.ensure_agent", no_agent)
    return seen


def _boto(service: str, region: str = "ap-northeast-1") -> object:
    import boto3

    return boto3.client(service, region_name=region)


async def _orch(project: Path, toml: str) -> Orchestrator:
    (project / "orch.toml").write_text(toml)
    return Orchestrator(cwd=project)


async def test_up_creates_the_instance_as_configured(
    aws_env: str, project: Path, orch_home: Path, no_handshake: list[str]
) -> None:
    orch = await _orch(project, _toml('tags = { team = "ml" }\n'))
    steps: list[str] = []
    info = await orch.up(progress=steps.append)
    assert info.state == "running" and info.detail == "created"
    assert info.instance_type == "t3.2xlarge" and info.market == "on-demand"
    assert info.price_per_hour == 0.4352  # ap-northeast-1 on the shipped table
    ec2 = _boto("ec2")
    [inst] = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]  # type: ignore[attr-defined]
    ami = _boto("ssm").get_parameter(Name=SSM_AL2023)["Parameter"]["Value"]  # type: ignore[attr-defined]
    assert inst["ImageId"] == ami and inst["InstanceType"] == "t3.2xlarge"
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags["orch:project"] == "proj" and tags["orch:machine"] == "big"
    assert tags["orch:owner"].startswith("arn:aws:") and tags["team"] == "ml"
    [vol] = ec2.describe_volumes(VolumeIds=[inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]])[
        "Volumes"
    ]  # type: ignore[attr-defined]
    assert vol["Size"] == 100 and vol["VolumeType"] == "gp3"
    # user-data carries the host key that orch pinned before the instance existed
    attr = ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")  # type: ignore[attr-defined]
    user_data = base64.b64decode(attr["UserData"]["Value"]).decode()
    assert keys.public_line(orch.layout.client_key).split()[1] in user_data
    host_key = render.host_key_from_user_data(user_data)
    assert host_key and keys.pinned_key(orch.layout, orch.provider().alias) == host_key
    # the security group orch made: SSH from the one configured address only
    [group] = ec2.describe_security_groups(GroupIds=[inst["SecurityGroups"][0]["GroupId"]])[
        "SecurityGroups"
    ]  # type: ignore[attr-defined]
    assert group["GroupName"] == "orch-proj-big"
    [rule] = group["IpPermissions"]
    assert (rule["FromPort"], rule["ToPort"]) == (22, 22)
    assert [r["CidrIp"] for r in rule["IpRanges"]] == ["203.0.113.7/32"]
    # reached at its public address, progress told along the way
    target = await orch.ssh_target()
    assert target.host == inst["PublicIpAddress"] and no_handshake == [target.host]
    assert any("launched i-" in s for s in steps) and "SSH reachable, host key verified" in steps
    assert "HostKeyAlias orch-proj-big" in orch.layout.ssh_config.read_text()


async def test_up_is_idempotent_and_down_up_restarts_the_same_instance(
    aws_env: str, project: Path, orch_home: Path, no_handshake: list[str]
) -> None:
    orch = await _orch(project, _toml())
    first = await orch.up()
    again = await orch.up()
    assert again.detail == "already running" and again.address == first.address
    ec2 = _boto("ec2")
    assert len(ec2.describe_instances()["Reservations"]) == 1  # type: ignore[attr-defined]
    down = await orch.down()
    assert down.state in ("stopping", "stopped")
    assert (await orch.machine_status()).state == "stopped"
    with pytest.raises(MachineNotRunning):
        await orch.ssh_target()
    started = await orch.up()
    assert started.detail == "started" and started.state == "running"
    assert started.address.split()[0] == first.address.split()[0]  # type: ignore[union-attr]
    assert len(ec2.describe_instances()["Reservations"]) == 1  # type: ignore[attr-defined]


async def test_terminate_names_instance_and_volume_then_destroys(
    aws_env: str, project: Path, orch_home: Path, no_handshake: list[str]
) -> None:
    orch = await _orch(project, _toml())
    await orch.up()
    inst = await orch.provider().find()  # type: ignore[attr-defined]
    plan = await orch.terminate_plan()
    assert plan and inst["InstanceId"] in plan
    assert inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"] in plan
    info = await orch.down(terminate=True)
    assert "terminated" in (info.detail or "")
    assert (await orch.machine_status()).state == "not-created"
    assert keys.pinned_key(orch.layout, orch.provider().alias) is None
    assert await orch.terminate_plan() is None


async def test_spot_instance_is_requested_and_priced_live(
    aws_env: str, project: Path, orch_home: Path, no_handshake: list[str]
) -> None:
    orch = await _orch(project, _toml("spot = true\nspot_max_price = 0.2\n"))
    info = await orch.up()
    [inst] = [i for r in _boto("ec2").describe_instances()["Reservations"] for i in r["Instances"]]  # type: ignore[attr-defined]
    assert inst["InstanceLifecycle"] == "spot"
    assert info.market == "spot" and info.price_note == "live spot price"
    assert info.price_per_hour is not None and info.price_per_hour != 0.4352


async def test_ssm_reach_opens_no_port_and_needs_the_aws_tools(
    aws_env: str,
    project: Path,
    orch_home: Path,
    tmp_path: Path,
    no_handshake: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    _boto("iam").create_instance_profile(InstanceProfileName="orch-ssm")  # type: ignore[attr-defined]
    orch = await _orch(project, _toml('reach = "ssm"\ninstance_profile = "orch-ssm"\n'))
    with pytest.raises(MissingDependency, match="aws and session-manager-plugin"):
        await orch.up()
    for tool in ("aws", "session-manager-plugin"):  # stand-ins: only their presence matters
        (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / tool).chmod(0o755)
    await orch.up()
    target = await orch.ssh_target()
    assert target.host.startswith("i-")
    assert target.proxy_command and "AWS-StartSSHSession" in target.proxy_command
    assert "--region ap-northeast-1" in target.proxy_command
    [inst] = [i for r in _boto("ec2").describe_instances()["Reservations"] for i in r["Instances"]]  # type: ignore[attr-defined]
    [group] = _boto("ec2").describe_security_groups(
        GroupIds=[inst["SecurityGroups"][0]["GroupId"]]
    )["SecurityGroups"]  # type: ignore[attr-defined]
    assert group["IpPermissions"] == []


async def test_error_paths_are_clear(
    aws_env: str, project: Path, orch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    orch = await _orch(project, _toml('ami = "ami-0000000000000dead"\n'))
    with pytest.raises(CloudConfigError) as bad_ami:
        await orch.up()
    assert "ami" in (bad_ami.value.hint or "")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    orch = await _orch(project, _toml())
    with pytest.raises(CloudCredentialsError, match="no AWS credentials") as no_creds:
        await orch.machine_status()
    assert "AWS_PROFILE" in (no_creds.value.hint or "")
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    with pytest.raises(CloudCredentialsError, match="profile"):
        await (await _orch(project, _toml())).machine_status()


def test_cli_unreachable_endpoint_and_machines_across_regions(
    aws_env: str, project: Path, orch_home: Path
) -> None:
    (project / "orch.toml").write_text(_toml())
    closed = dict(os.environ, AWS_ENDPOINT_URL="http://127.0.0.1:9")
    # `orch status` always shows the machine row (so the editor can too) and says why its
    # state is unknown; `orch up` fails with the unreachable exit code.
    shown = run_orch("status", env=closed, cwd=project)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr
    assert "unknown" in shown.stdout and "cannot reach the AWS" in shown.stdout
    bad = run_orch("up", "--yes", env=closed, cwd=project)
    assert bad.returncode == 3 and "Traceback" not in bad.stderr
    assert "cannot reach the AWS" in bad.stderr
    # two forgotten machines in two regions, from other projects
    for region, project_name in (("us-east-1", "old"), ("eu-west-1", "older")):
        _boto("ec2", region).run_instances(  # type: ignore[attr-defined]
            ImageId="ami-12c6146b" if region == "us-east-1" else "ami-03cf127a",
            InstanceType="t3.large",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "orch:managed", "Value": "true"},
                        {"Key": "orch:project", "Value": project_name},
                        {"Key": "orch:machine", "Value": "gpu"},
                    ],
                }
            ],
        )
    here = run_orch("machines", "--json", cwd=project)
    assert here.returncode == 0, here.stderr
    # orch.toml's region only (ap-northeast-1): only this project's machines, none created
    rows = json.loads(here.stdout)["machines"]
    assert {(e["machine"], e["kind"], e["state"]) for e in rows} == {
        ("big", "ec2", "not-created"),
        ("local", "local", "stopped"),
    }
    everywhere = run_orch("machines", "--all-regions", "--json", cwd=project, timeout=120)
    assert everywhere.returncode == 0, everywhere.stderr
    found = {
        (e["region"], e["project"], e["state"])
        for e in json.loads(everywhere.stdout)["machines"]
        if e["instance_id"]
    }
    assert found == {("us-east-1", "old", "running"), ("eu-west-1", "older", "running")}
    table = run_orch("machines", "--all-regions", cwd=project, timeout=120).stdout
    assert "$0.0832" in table and "old" in table
    refused = run_orch("down", "--all", "--all-regions", cwd=project, input="n\n", timeout=120)
    assert refused.returncode == 1 and "cancelled" in refused.stderr
    stopped = run_orch("down", "--all", "--all-regions", cwd=project, input="yes\n", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.count("stopping i-") == 2
    after = json.loads(
        run_orch("machines", "--all-regions", "--json", cwd=project, timeout=120).stdout
    )["machines"]
    assert {e["state"] for e in after if e["instance_id"]} == {"stopped"}


def test_cli_up_asks_before_creating_a_gpu_machine(
    aws_env: str, project: Path, orch_home: Path
) -> None:
    (project / "orch.toml").write_text(_toml().replace("t3.2xlarge", "g4dn.xlarge"))
    no = run_orch("up", cwd=project, input="n\n", timeout=120)
    assert no.returncode == 1 and "cancelled" in no.stderr
    assert "will create g4dn.xlarge in ap-northeast-1, $0.7100/h on-demand" in no.stderr
    assert "g4dn.xlarge has a GPU: create it?" in no.stderr
    assert _boto("ec2").describe_instances()["Reservations"] == []  # type: ignore[attr-defined]


async def test_cheap_machine_is_shown_but_not_asked_about(
    aws_env: str, project: Path, orch_home: Path
) -> None:
    orch = await _orch(project, _toml())
    plan = await orch.up_plan()
    assert plan is not None and not plan.ask and plan.price_per_hour == 0.4352
    spot = await (await _orch(project, _toml("spot = true\n"))).up_plan()
    assert spot is not None and "spot" in spot.description


class CapacityLimitedAws:
    """The real moto-backed Aws, except that RunInstances answers AWS's capacity error (a real
    botocore ClientError, translated as usual) outside `zones_with_capacity`: moto itself
    never runs out of capacity."""

    def __init__(self, inner: object, zones_with_capacity: set[str], spot_ok: bool) -> None:
        self.inner = inner
        self.zones = zones_with_capacity
        self.spot_ok = spot_ok
        self.launches: list[tuple[str | None, bool]] = []

    async def call(self, service: str, op: str, region: str | None = None, **kw: object) -> object:
        if op == "run_instances":
            zone = (kw.get("Placement") or {}).get("AvailabilityZone")  # type: ignore[attr-defined]
            spot = "InstanceMarketOptions" in kw
            self.launches.append((zone, spot))
            if zone not in self.zones or (spot and not self.spot_ok):
                from botocore.exceptions import ClientError

                from sidecar.machines.ec2.aws import translate

                error = ClientError(
                    {"Error": {"Code": "InsufficientInstanceCapacity", "Message": "none"}},
                    "RunInstances",
                )
                raise translate(error, service, "RunInstances", region or "ap-northeast-1")
        return await self.inner.call(service, op, region, **kw)  # type: ignore[attr-defined]


async def test_capacity_error_moves_to_another_zone(
    aws_env: str, project: Path, orch_home: Path, no_handshake: list[str]
) -> None:
    orch = await _orch(project, _toml())
    provider = orch.provider()
    fake = CapacityLimitedAws(provider.aws, {"ap-northeast-1c"}, spot_ok=True)  # type: ignore[attr-defined]
    provider.aws = fake  # type: ignore[attr-defined]
    steps: list[str] = []
    info = await orch.up(progress=steps.append)
    assert info.state == "running"
    assert fake.launches[0] == (None, False) and fake.launches[-1] == ("ap-northeast-1c", False)
    assert any("no on-demand capacity in ap-northeast-1a" in s for s in steps)
    [inst] = [i for r in _boto("ec2").describe_instances()["Reservations"] for i in r["Instances"]]  # type: ignore[attr-defined]
    assert inst["Placement"]["AvailabilityZone"] == "ap-northeast-1c"


async def test_no_spot_anywhere_falls_back_to_on_demand_only_when_asked(
    aws_env: str, project: Path, orch_home: Path, no_handshake: list[str]
) -> None:
    zones = {"ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"}
    orch = await _orch(project, _toml("spot = true\n"))
    provider = orch.provider()
    provider.aws = CapacityLimitedAws(provider.aws, zones, spot_ok=False)  # type: ignore[attr-defined]
    from sidecar.errors import CloudError

    with pytest.raises(CloudError, match=r"no capacity for t3\.2xlarge") as caught:
        await orch.up()
    assert "spot in ap-northeast-1a: InsufficientInstanceCapacity" in caught.value.message
    assert "fallback = 'on-demand'" in (caught.value.hint or "")
    assert _boto("ec2").describe_instances()["Reservations"] == []  # type: ignore[attr-defined]

    orch = await _orch(project, _toml('spot = true\nfallback = "on-demand"\n'))
    provider = orch.provider()
    provider.aws = CapacityLimitedAws(provider.aws, zones, spot_ok=False)  # type: ignore[attr-defined]
    info = await orch.up()
    assert info.state == "running" and info.market == "on-demand"


async def test_status_reads_aws_at_most_every_few_seconds(
    aws_env: str, project: Path, orch_home: Path, no_handshake: list[str]
) -> None:
    orch = await _orch(project, _toml())
    await orch.up()
    provider = orch.provider()
    calls: list[str] = []
    inner = provider.aws  # type: ignore[attr-defined]

    class Counting:
        async def call(
            self, service: str, op: str, region: str | None = None, **kw: object
        ) -> object:
            calls.append(op)
            return await inner.call(service, op, region, **kw)

    provider.aws = Counting()  # type: ignore[attr-defined]
    first = await orch.machine_status()
    n = len(calls)
    second = await orch.machine_status()
    assert n >= 1 and len(calls) == n  # the second read came from the cache
    assert second.state == first.state == "running"
    await orch.down()  # a change forgets the cache
    assert (await orch.machine_status()).state == "stopped"


async def test_cli_terminate_asks_naming_instance_and_volume(
    aws_env: str, project: Path, orch_home: Path, no_handshake: list[str]
) -> None:
    # moto's instance has a made-up public address: the CLI's look for running jobs goes
    # through a proxy that fails at once instead of sending packets off this computer.
    orch = await _orch(project, _toml('proxy_command = "exit 1"\n'))
    await orch.up()
    inst = await orch.provider().find()  # type: ignore[attr-defined]
    volume = inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    no = run_orch("down", "--terminate", cwd=project, input="n\n", timeout=120)
    assert no.returncode == 1 and "cancelled" in no.stderr
    assert inst["InstanceId"] in no.stderr and volume in no.stderr
    assert (await orch.provider().find())["State"]["Name"] == "running"  # type: ignore[attr-defined]
    yes = run_orch("destroy", "--yes", cwd=project, timeout=120)
    assert yes.returncode == 0, yes.stderr
    assert f"terminated {inst['InstanceId']}" in yes.stdout
    status = run_orch("status", cwd=project, timeout=120)
    assert status.returncode == 0 and "not-created" in status.stdout
