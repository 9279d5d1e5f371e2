"""The pure EC2 renderers: user-data, security-group rules, IAM policy, RunInstances request,
prices; and the bounded waits driven by scripted state sequences."""

from __future__ import annotations

import base64
import json

import pytest

from remote_config import ec2
from remote_config.ec2_prices import PRICES_DATE, PRICES_SOURCE, cost_so_far, on_demand_price
from remote_config.model import EC2Machine
from sidecar.errors import (
    AuthenticationFailed,
    ConnectTimeout,
    HostKeyMismatch,
    OrchError,
    Unreachable,
)
from sidecar.machines.base import SSHTarget
from sidecar.machines.ec2 import waiting

PRIVATE = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAline1\nBBBBline2\n-----END OPENSSH PRIVATE KEY-----\n"
)
HOST_PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHOSTKEY"
CLIENT_PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICLIENT orch@laptop"


def _spec(user: str = "ec2-user") -> ec2.UserDataSpec:
    return ec2.UserDataSpec(user, CLIENT_PUB, PRIVATE, HOST_PUB)


def _yaml() -> object:
    return pytest.importorskip("yaml")


def test_user_data_installs_orch_host_key_login_key_and_tools() -> None:
    text = ec2.render_user_data(_spec())
    assert text.startswith("#cloud-config\n")
    doc = _yaml().safe_load(text)  # type: ignore[attr-defined]
    assert doc["ssh_keys"]["ed25519_private"] == PRIVATE
    assert doc["ssh_keys"]["ed25519_public"] == HOST_PUB
    assert doc["ssh_deletekeys"] is True and doc["ssh_genkeytypes"] == []
    assert doc["ssh_authorized_keys"] == [CLIENT_PUB]
    assert doc["packages"] == ["tmux", "rsync", "python3"]
    assert ec2.host_key_from_user_data(text) == HOST_PUB


def test_user_data_for_a_custom_user_creates_it_with_the_key() -> None:
    doc = _yaml().safe_load(ec2.render_user_data(_spec("dev")))  # type: ignore[attr-defined]
    assert doc["users"][0] == "default"
    assert doc["users"][1]["name"] == "dev"
    assert doc["users"][1]["ssh_authorized_keys"] == [CLIENT_PUB]
    assert "ssh_authorized_keys" not in doc


def test_user_data_refuses_bad_user_and_multiline_key() -> None:
    with pytest.raises(ValueError):
        ec2.render_user_data(_spec("bad user;rm"))
    with pytest.raises(ValueError):
        ec2.render_user_data(ec2.UserDataSpec("ec2-user", CLIENT_PUB + "\nx", PRIVATE, HOST_PUB))


def test_host_key_is_read_back_from_base64_user_data() -> None:
    encoded = base64.b64encode(ec2.render_user_data(_spec()).encode()).decode()
    assert ec2.host_key_from_user_data(ec2.decode_user_data(encoded)) == HOST_PUB
    assert ec2.host_key_from_user_data("#!/bin/sh\necho hi\n") is None


def test_ssh_rule_only_from_the_callers_one_address() -> None:
    rules = ec2.ingress_rules("public-ip", ec2.caller_cidr("203.0.113.7"))
    assert rules == [
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22,
            "IpRanges": [{"CidrIp": "203.0.113.7/32", "Description": "orch: SSH from the caller"}],
        }
    ]
    v6 = ec2.ingress_rules("public-ip", ec2.caller_cidr("2001:db8::5"))
    assert v6[0]["Ipv6Ranges"][0]["CidrIpv6"] == "2001:db8::5/128"
    assert ec2.ingress_rules("ssm", None) == []
    with pytest.raises(ValueError):
        ec2.ingress_rules("public-ip", "0.0.0.0/0")
    with pytest.raises(ValueError):
        ec2.caller_cidr("10.0.0.0/8")


def test_iam_policy_lists_least_privilege_actions() -> None:
    base = ec2.iam_policy()
    actions = ec2.policy_actions(base)
    assert "ec2:RunInstances" in actions and "ec2:StopInstances" in actions
    assert not any(a.startswith(("iam:", "ssm:StartSession")) for a in actions)
    assert all("*" not in a for a in actions)
    lifecycle = next(s for s in base["Statement"] if s["Sid"] == "OrchLifecycle")
    assert lifecycle["Condition"] == {"StringEquals": {"ec2:ResourceTag/orch:managed": "true"}}
    ssm = ec2.policy_actions(ec2.iam_policy("ssm", instance_profile=True))
    assert {"ssm:StartSession", "iam:PassRole"} <= set(ssm)
    json.dumps(base)  # serialisable as a policy document


def _launch(**kw: object) -> dict[str, object]:
    spec = ec2.LaunchSpec(
        image_id="ami-0123456789abcdef0",
        instance_type="t3.2xlarge",
        user_data="#cloud-config\n",
        tags=ec2.project_tags("proj", "big", "arn:aws:iam::1:user/me"),
        volume_gb=100,
        **kw,  # type: ignore[arg-type]
    )
    return ec2.run_instances_request(spec)


def test_run_instances_request_on_demand() -> None:
    req = _launch(subnet_id="subnet-1", security_group_ids=("sg-1",), extra_tags={"Name": "x"})
    assert req["ImageId"] == "ami-0123456789abcdef0" and req["InstanceType"] == "t3.2xlarge"
    ebs = req["BlockDeviceMappings"][0]["Ebs"]  # type: ignore[index]
    assert ebs == {
        "VolumeSize": 100,
        "VolumeType": "gp3",
        "DeleteOnTermination": True,
        "Encrypted": True,
    }
    tags = {t["Key"]: t["Value"] for t in req["TagSpecifications"][0]["Tags"]}  # type: ignore[index]
    assert tags["orch:project"] == "proj" and tags["orch:machine"] == "big"
    assert tags["orch:owner"] == "arn:aws:iam::1:user/me" and tags["Name"] == "x"
    assert req["SubnetId"] == "subnet-1" and req["SecurityGroupIds"] == ["sg-1"]
    assert req["MetadataOptions"]["HttpTokens"] == "required"  # type: ignore[index]
    assert "InstanceMarketOptions" not in req and "IamInstanceProfile" not in req


def test_run_instances_request_spot_stops_on_interruption() -> None:
    req = _launch(spot=True, spot_max_price=0.12, availability_zone="ap-northeast-1a")
    assert req["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {
            "SpotInstanceType": "persistent",
            "InstanceInterruptionBehavior": "stop",
            "MaxPrice": "0.1200",
        },
    }
    assert req["Placement"] == {"AvailabilityZone": "ap-northeast-1a"}


def test_shutdown_behaviour_follows_stop_action() -> None:
    assert _launch()["InstanceInitiatedShutdownBehavior"] == "stop"
    assert _launch(shutdown_behavior="terminate")["InstanceInitiatedShutdownBehavior"] == (
        "terminate"
    )
    # A throwaway spot machine is a one-time request: a persistent one would relaunch it.
    req = _launch(spot=True, shutdown_behavior="terminate")
    assert req["InstanceMarketOptions"]["SpotOptions"] == {  # type: ignore[index]
        "SpotInstanceType": "one-time",
        "InstanceInterruptionBehavior": "terminate",
    }


def test_idle_stop_hook_is_an_instance_initiated_shutdown() -> None:
    hook = ec2.idle_stop_hook("terminate")
    assert hook["kind"] == "command" and hook["argv"] == ["sudo", "-n", "shutdown", "-h", "now"]
    assert "terminate" in hook["note"]
    policy = ec2.iam_policy()
    assert "ec2:ModifyInstanceAttribute" in ec2.policy_actions(policy)
    [lifecycle] = [s for s in policy["Statement"] if s["Sid"] == "OrchLifecycle"]
    assert "ec2:ModifyInstanceAttribute" in lifecycle["Action"] and lifecycle["Condition"]


def test_ami_parameter_follows_architecture() -> None:
    assert ec2.ami_parameter("t3.large").endswith("x86_64")
    assert ec2.ami_parameter("m7g.large").endswith("arm64")
    assert ec2.ami_parameter("c6gn.xlarge").endswith("arm64")
    assert ec2.ami_parameter("g4dn.xlarge").endswith("x86_64")


def test_gpu_families_are_recognised() -> None:
    for gpu in ("g4dn.xlarge", "g5.2xlarge", "p3.2xlarge", "p4d.24xlarge", "inf2.xlarge"):
        assert ec2.has_gpu(gpu), gpu
    for cpu in ("t3.2xlarge", "m7g.large", "c6gn.xlarge", "t4g.micro"):
        assert not ec2.has_gpu(cpu), cpu


def test_price_table_is_dated_and_costs_add_up() -> None:
    assert PRICES_DATE and "aws.amazon.com" in PRICES_SOURCE
    assert on_demand_price("us-east-1", "t3.2xlarge") == 0.3328
    assert on_demand_price("mars-1", "t3.large") is None
    assert cost_so_far(0.36, 1800) == 0.18
    assert cost_so_far(None, 10) is None


def test_model_validates_ec2_fields() -> None:
    ok = EC2Machine(kind="ec2", ami="ssm:/aws/service/x", region="ap-northeast-1")
    assert ok.volume_type == "gp3" and ok.reach == "public-ip"
    for bad in ({"ami": "debian"}, {"region": "tokyo"}, {"tags": {"orch:project": "x"}}):
        with pytest.raises(ValueError):
            EC2Machine(kind="ec2", **bad)  # type: ignore[arg-type]


# -- waiting, driven by scripted sequences ----------------------------------------------------
class Script:
    def __init__(self, states: list[str]) -> None:
        self.states = states
        self.now = 0.0
        self.calls = 0

    async def describe(self) -> tuple[str, str | None]:
        self.calls += 1
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return state, "Server.SpotInstanceTermination" if state == "stopped" else None

    async def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now


async def test_wait_reaches_running_after_pending() -> None:
    s = Script(["pending", "pending", "pending", "running"])
    seen: list[str] = []
    got = await waiting.wait_for_state(
        s.describe,
        "running",
        instance_id="i-1",
        timeout=60,
        poll=5,
        progress=seen.append,
        sleep=s.sleep,
        clock=s.clock,
    )
    assert got == "running" and s.calls == 4 and s.now == 15
    assert seen[-1].startswith("i-1: pending (10 s)")


async def test_wait_times_out_with_the_state_it_was_in() -> None:
    s = Script(["pending"])
    with pytest.raises(OrchError, match="still pending after 30 s"):
        await waiting.wait_for_state(
            s.describe,
            "running",
            instance_id="i-1",
            timeout=30,
            poll=10,
            sleep=s.sleep,
            clock=s.clock,
        )
    assert s.calls == 4


async def test_wait_stops_at_a_dead_end_with_the_reason() -> None:
    s = Script(["pending", "stopped"])
    with pytest.raises(OrchError, match=r"became stopped.*SpotInstanceTermination"):
        await waiting.wait_for_state(
            s.describe, "running", instance_id="i-1", timeout=60, sleep=s.sleep, clock=s.clock
        )


def _target() -> SSHTarget:
    return SSHTarget(
        alias="a",
        host="h",
        port=22,
        user="u",
        identity_file="k",
        host_key_alias="a",
        known_hosts_file="kh",
    )


async def test_wait_for_ssh_retries_boot_errors_then_succeeds() -> None:
    s = Script(["x"])
    errors: list[Exception] = [Unreachable("refused"), AuthenticationFailed("no key yet")]

    async def connect(_t: SSHTarget) -> None:
        if errors:
            raise errors.pop(0)

    await waiting.wait_for_ssh(_target(), connect, timeout=60, poll=2, sleep=s.sleep, clock=s.clock)
    assert s.now == 4 and not errors


async def test_wait_for_ssh_refuses_a_wrong_host_key_at_once() -> None:
    s = Script(["x"])
    calls = 0

    async def connect(_t: SSHTarget) -> None:
        nonlocal calls
        calls += 1
        raise HostKeyMismatch("wrong key")

    with pytest.raises(HostKeyMismatch):
        await waiting.wait_for_ssh(_target(), connect, timeout=60, sleep=s.sleep, clock=s.clock)
    assert calls == 1 and s.now == 0


async def test_wait_for_ssh_gives_up_with_the_last_reason() -> None:
    s = Script(["x"])

    async def connect(_t: SSHTarget) -> None:
        raise Unreachable("connection refused")

    with pytest.raises(ConnectTimeout, match="within 9 s: connection refused"):
        await waiting.wait_for_ssh(
            _target(), connect, timeout=9, poll=3, sleep=s.sleep, clock=s.clock
        )


def test_docs_list_exactly_the_policys_actions() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "ec2.md").read_text()
    section = text.split("3. **Permissions**", 1)[1].split("4. **Quotas**", 1)[0]
    documented = set(re.findall(r"`((?:ec2|ssm|iam|logs):[A-Za-z]+)`", section))
    full = ec2.iam_policy("ssm", instance_profile=True, create_profile=True, cloudwatch_logs=True)
    policy = set(ec2.policy_actions(full))
    assert documented == policy


def test_a_spot_interruption_is_named_in_status() -> None:
    from sidecar.machines.ec2.provider import _stop_reason

    stopped = {
        "State": {"Name": "stopped"},
        "StateReason": {
            "Code": "Server.SpotInstanceShutdown",
            "Message": "Server.SpotInstanceShutdown: Spot instance shutdown",
        },
    }
    assert "spot interruption (Server.SpotInstanceShutdown)" in (_stop_reason(stopped) or "")
    user = {"State": {"Name": "stopped"}, "StateReason": {"Code": "Client.UserInitiatedShutdown"}}
    assert _stop_reason(user) is None
    assert (
        _stop_reason({"State": {"Name": "running"}, "StateReason": stopped["StateReason"]}) is None
    )
