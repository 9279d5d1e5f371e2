"""The EC2 idle stop path against moto's server: the shutdown behaviour orch sets from
`stop_action` (at launch, and corrected by `orch up`), the idle agent's EC2 hook, and an
idle agent that stops the instance.

moto runs no guest, so the instance-initiated shutdown is played by a stand-in `sudo` on
PATH: it checks the argv the agent runs (`sudo -n shutdown -h now`) and then does what EC2
does when an instance shuts itself down: stop or terminate it, by its
InstanceInitiatedShutdownBehavior as read from moto.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from sidecar.app import Orchestrator
from sidecar.idle.agent import Agent
from sidecar.idle.service import agent_config
from tests.integration.test_ec2_moto import _boto, _orch, _toml, no_handshake  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

HYPERVISOR = r'''#!{python}
"""Stands in for `sudo shutdown -h now` on an EC2 instance: EC2 applies the instance's
InstanceInitiatedShutdownBehavior when the guest powers off."""
import json, os, sys
import boto3
assert sys.argv[1:] == ["-n", "shutdown", "-h", "now"], sys.argv
iid = os.environ["ORCH_TEST_INSTANCE"]
ec2 = boto3.client("ec2", region_name="ap-northeast-1")
how = ec2.describe_instance_attribute(
    InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior"
)["InstanceInitiatedShutdownBehavior"]["Value"]
if how == "terminate":
    ec2.terminate_instances(InstanceIds=[iid])
else:
    ec2.stop_instances(InstanceIds=[iid])
with open(os.environ["ORCH_TEST_SHUTDOWNS"], "a") as log:
    log.write(how + "\n")
'''


def _instance() -> dict[str, object]:
    [inst] = [
        i
        for r in _boto("ec2").describe_instances()["Reservations"]  # type: ignore[attr-defined]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    return dict(inst)


def _behaviour(iid: str) -> str:
    attr = _boto("ec2").describe_instance_attribute(  # type: ignore[attr-defined]
        InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior"
    )
    return str(attr["InstanceInitiatedShutdownBehavior"]["Value"])


@pytest.mark.usefixtures("no_handshake")
async def test_stop_action_sets_the_shutdown_behaviour_and_up_corrects_it(
    aws_env: str, project: Path, orch_home: Path
) -> None:
    orch = await _orch(project, _toml('stop_action = "terminate"\n'))
    await orch.up()
    iid = str(_instance()["InstanceId"])
    assert _behaviour(iid) == "terminate"
    # The user changed their mind: the next `orch up` sets it on the existing instance.
    steps: list[str] = []
    again = await _orch(project, _toml('stop_action = "stop"\n'))
    await again.up(progress=steps.append)
    assert _behaviour(iid) == "stop"
    assert "shutdown behaviour terminate -> stop (stop_action)" in steps


@pytest.mark.usefixtures("no_handshake")
@pytest.mark.parametrize("stop_action", ["stop", "terminate"])
async def test_the_idle_agent_stops_the_instance_through_a_shutdown(
    stop_action: str,
    aws_env: str,
    project: Path,
    orch_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orch = await _orch(project, _toml(f'idle_stop = "10m"\nstop_action = "{stop_action}"\n'))
    info = await orch.up()
    iid = str(_instance()["InstanceId"])
    config = agent_config(orch.context(), info)
    assert config is not None
    assert config["policy"]["idle_stop_s"] == 600
    assert config["hook"]["kind"] == "command"
    assert config["hook"]["argv"] == ["sudo", "-n", "shutdown", "-h", "now"]
    assert config["notice_check"] is None  # on demand: no spot notice to watch for

    # The machine's side: the agent's files, a quiet machine, the stand-in hypervisor.
    home = tmp_path / "machine"
    (home / ".orch" / "idle").mkdir(parents=True)
    config["disable"] = ["gpu", "cpu", "vscode", "terminals", "tmux"]
    (home / ".orch" / "idle" / "config.json").write_text(json.dumps(config))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sudo").write_text(HYPERVISOR.format(python=sys.executable))
    (bin_dir / "sudo").chmod(0o755)
    shutdowns = tmp_path / "shutdowns"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("ORCH_TEST_INSTANCE", iid)
    monkeypatch.setenv("ORCH_TEST_SHUTDOWNS", str(shutdowns))
    clock = tmp_path / "clock"
    agent = Agent(home, clock)
    clock.write_text("1000")
    assert agent.run(None, once=True) == 0
    assert shutdowns.exists() is False  # not idle long enough yet
    clock.write_text(str(1000 + 601))
    assert agent.run(None, once=True) == 0
    assert shutdowns.read_text() == f"{stop_action}\n"
    log = (home / ".orch" / "idle.log").read_text()
    assert "sudo -n shutdown -h now" in log

    state = _instance()["State"] if stop_action == "stop" else None
    after = await Orchestrator(cwd=project).machine_status()
    if stop_action == "stop":
        assert state is not None and after.state in ("stopping", "stopped")
    else:
        assert after.state == "not-created"
