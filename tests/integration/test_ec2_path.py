"""The whole EC2 path for real: `orch up` creates an instance in moto's server, the test plays
cloud-init (installs the host key and login key from the instance's user-data into a real
OpenSSH sshd on 127.0.0.1), orch reaches it through a user `proxy_command` (as through a
bastion), verifies the host key it generated and pinned, then `orch ssh`, sync, a job and
`orch status` with cost work on it, and `orch down` stops it.

Uses the orch-test user's sshd: run under the shared lock (see HELPER_RULES / docs).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import _wipe_home
from tests.helpers import REPO, Sshd, free_port, run_orch, sshd_available, stop_pid
from tests.imds import Imds, imds

pytestmark = pytest.mark.integration

RELAY = r"""
import socket, sys, threading
host, port, target, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
with open(log, "a") as f:
    f.write(f"{host}:{port}\n")
sock = socket.create_connection(("127.0.0.1", target))
def up():
    while data := sys.stdin.buffer.read1(65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while data := sock.recv(65536):
    sys.stdout.buffer.write(data); sys.stdout.buffer.flush()
"""


def _cloud_init(user_data: str, folder: Path, port: int) -> Sshd:
    """What cloud-init does with orch's user-data, applied to a throwaway sshd."""
    import yaml

    doc = yaml.safe_load(user_data)
    key = folder / "host_ed25519_key"
    key.write_text(doc["ssh_keys"]["ed25519_private"])
    key.chmod(0o600)
    [user] = [u for u in doc["users"] if isinstance(u, dict)]
    (folder / "authorized_keys").write_text("\n".join(user["ssh_authorized_keys"]) + "\n")
    (folder / "authorized_keys").chmod(0o644)
    import pwd

    home = Path(pwd.getpwnam(user["name"]).pw_dir)
    sshd = Sshd(
        port, folder, folder / "unused", doc["ssh_keys"]["ed25519_public"], user["name"], home
    )
    sshd.start()
    return sshd


def _wait_for_instance(timeout: float = 60) -> str:
    import base64

    import boto3

    ec2 = boto3.client("ec2", region_name="eu-west-1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for res in ec2.describe_instances()["Reservations"]:
            for inst in res["Instances"]:
                attr = ec2.describe_instance_attribute(
                    InstanceId=inst["InstanceId"], Attribute="userData"
                )
                return base64.b64decode(attr["UserData"]["Value"]).decode()
        time.sleep(0.2)
    raise TimeoutError("orch up created no instance")


STAND_IN_AWS = r'''#!{python}
"""Stands in for the AWS CLI's `aws ssm start-session` (+ Session Manager plugin): checks
the arguments orch's SSM ProxyCommand passes, then carries SSH to the test sshd."""
import os, sys
args = sys.argv[1:]
assert args[:2] == ["ssm", "start-session"], args
assert args[args.index("--document-name") + 1] == "AWS-StartSSHSession", args
assert args[args.index("--region") + 1] == "eu-west-1", args
target = args[args.index("--target") + 1]
port = args[args.index("--parameters") + 1].removeprefix("portNumber=")
os.execv("{python}", ["{python}", "{relay}", target, port, "{sshd_port}", "{hops}"])
'''


def _stand_in_aws(bin_dir: Path, relay: Path, sshd_port: int, hops: Path) -> None:
    bin_dir.mkdir()
    script = STAND_IN_AWS.format(python=sys.executable, relay=relay, sshd_port=sshd_port, hops=hops)
    (bin_dir / "aws").write_text(script)
    (bin_dir / "session-manager-plugin").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("aws", "session-manager-plugin"):
        (bin_dir / tool).chmod(0o755)


def _spot_notice(project: Path, service: Imds) -> None:
    """A spot interruption notice in the (stand-in) metadata service, read on the machine by
    `orch status`: shown on the machine, and its running job marked interrupted."""
    toml = project / "orch.toml"
    toml.write_text(toml.read_text() + "spot = true\n")
    job = run_orch("run", "long", "--", "sleep", "60", cwd=project, timeout=120)
    assert job.returncode == 0, job.stderr
    quiet = json.loads(run_orch("status", "--json", cwd=project).stdout)
    assert quiet["machine"]["interruption"] is None
    assert {j["name"]: j["state"] for j in quiet["jobs"]}["long"] == "running"
    service.notice = {"action": "stop", "time": "2026-12-06T05:02:00Z"}
    deadline = time.monotonic() + 15  # the orch agent's watched status may be a read old
    while True:
        status = json.loads(run_orch("status", "--json", cwd=project).stdout)
        notice = status["machine"]["interruption"]
        if notice is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert (notice["action"], notice["time"]) == ("stop", "2026-12-06T05:02:00Z")
    jobs = {j["name"]: j for j in status["jobs"]}
    assert jobs["long"]["state"] == "interrupted"
    assert jobs["train"]["state"] == "succeeded"  # ended before the notice
    text = run_orch("status", cwd=project).stdout
    assert "spot interruption: AWS will stop the machine at 2026-12-06T05:02:00Z" in text
    assert "note: long is interrupted: spot interruption" in text
    assert ("PUT", "/latest/api/token") in service.requests
    run_orch("stop", "long", cwd=project, timeout=60)


@pytest.mark.parametrize("reach", ["proxy_command", "ssm"])
def test_up_ssh_sync_job_status_down_through_a_proxy(
    reach: str,
    aws_env: str,
    project: Path,
    orch_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reason = sshd_available()
    if reason:
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="orch-ec2-sshd-"))
    folder.chmod(0o755)
    port = free_port()
    relay = tmp_path / "relay.py"
    relay.write_text(RELAY)
    hops = tmp_path / "hops.log"
    stack = contextlib.ExitStack()
    if reach == "ssm":
        import boto3

        _stand_in_aws(tmp_path / "bin", relay, port, hops)
        monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
        iam = boto3.client("iam", region_name="eu-west-1")
        iam.create_instance_profile(InstanceProfileName="orch-ssm")
        how = 'reach = "ssm"\ninstance_profile = "orch-ssm"\n'
    else:
        # with job logs shipped to CloudWatch (moto), with the instance role's credentials
        # from a stand-in metadata service that also serves the spot notice
        service = stack.enter_context(imds())
        how = (
            f'proxy_command = "{sys.executable} {relay} %h %p {port} {hops}"\n'
            f'cloudwatch_logs = true\nlogs_endpoint_url = "{aws_env}"\n'
            f'metadata_url = "{service.url}"\n'
        )
    (project / "orch.toml").write_text(
        '[project]\nname = "proj"\ndefault_machine = "gpu"\n'
        '[machines.gpu]\nkind = "ec2"\nregion = "eu-west-1"\ninstance_type = "g4dn.xlarge"\n'
        'ami = "al2023"\n'  # moto has no Deep Learning AMI parameter (the GPU default)
        f'user = "orch-test"\nssh_from = "198.51.100.4"\nidle_stop = "off"\n{how}'
    )
    (project / "train.py").write_text("print('trained on', __import__('socket').gethostname())\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))  # after PATH was set: the stand-in is on it
    up = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli.main", "up", "--yes"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sshd: Sshd | None = None
    try:
        user_data = _wait_for_instance()
        time.sleep(1)  # orch is now retrying SSH: sshd is not there yet (instance "booting")
        sshd = _cloud_init(user_data, folder, port)
        _wipe_home(sshd.home)
        out, err = up.communicate(timeout=120)
        assert up.returncode == 0, err
        assert "gpu (ec2): running" in out
        assert "will create g4dn.xlarge in eu-west-1, $0.5870/h on-demand" in err
        # %h was the instance's private address (its id through SSM), %p its SSH port
        first_hop = hops.read_text().splitlines()[0]
        assert first_hop.endswith(":22")
        if reach == "ssm":
            assert first_hop.startswith("i-")
        else:
            assert first_hop.split(":")[0].count(".") == 3

        # OpenSSH through the managed entry: ProxyCommand + the pinned, generated host key
        ssh = run_orch("ssh", "--", "echo", "hello-from-ec2", cwd=project)
        assert ssh.returncode == 0, ssh.stderr
        assert ssh.stdout.strip() == "hello-from-ec2"
        config = (orch_home / "ssh" / "config").read_text()
        assert "ProxyCommand" in config and "StrictHostKeyChecking yes" in config

        synced = run_orch("sync", "now", cwd=project, timeout=120)
        assert synced.returncode == 0, synced.stderr
        job = run_orch("run", "train", "--", "python3", "train.py", cwd=project, timeout=120)
        assert job.returncode == 0, job.stderr
        deadline = time.monotonic() + 30
        logs = ""
        while "trained on" not in logs and time.monotonic() < deadline:
            logs = run_orch("logs", "train", cwd=project).stdout
            time.sleep(0.3)
        assert "trained on" in logs

        status = run_orch("status", cwd=project)
        assert status.returncode == 0, status.stderr
        assert "g4dn.xlarge" in status.stdout and "on-demand" in status.stdout
        assert "$0.5870" in status.stdout  # eu-west-1 from the shipped table
        assert "price table of" in status.stdout and "train" in status.stdout

        if reach == "proxy_command":
            _spot_notice(project, service)

        down = run_orch("down", cwd=project)
        assert down.returncode == 0, down.stderr
        assert "stopping" in down.stdout or "stopped" in down.stdout
        after = run_orch("ssh", "--", "true", cwd=project)
        assert after.returncode == 5 and "orch up" in after.stderr
        if reach == "proxy_command":  # the job wrapper shipped run.log: readable without it
            archived = run_orch("logs", "train", cwd=project)
            assert archived.returncode == 0, archived.stderr
            assert "trained on" in archived.stdout
    finally:
        stack.close()
        if up.poll() is None:
            stop_pid(up.pid)
        if sshd is not None:
            with_tmux = [
                "su",
                sshd.user,
                "-s",
                "/bin/sh",
                "-c",
                'tmux -S "$HOME/.orch/tmux" kill-server',
            ]
            subprocess.run(with_tmux, capture_output=True, timeout=10)
            sshd.stop()
            _wipe_home(sshd.home)
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
