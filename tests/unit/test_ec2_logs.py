"""CloudWatch job logs, the parts that need no AWS: the shipper's SigV4 signature (checked
against botocore's own signer), names, the install script, reading events back."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

from remote_config import ec2_logs
from sidecar.machines.ec2.log_shipper import sign_v4

CREDS = {"AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "wJalr/K7MDENG", "Token": "tok=="}


def test_signature_matches_botocore() -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = json.dumps({"logGroupName": "/orch/p", "logStreamName": "m/j/1"}).encode()
    headers = {
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": "Logs_20140328.CreateLogStream",
    }
    url = "https://logs.eu-west-1.amazonaws.com/"
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    signer = SigV4Auth(Credentials("AKIDEXAMPLE", "wJalr/K7MDENG", "tok=="), "logs", "eu-west-1")
    signer.add_auth(request)
    # the same request at the same second, signed by the shipper
    when = dt.datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    ours = sign_v4("POST", url, headers, body, CREDS, "eu-west-1", "logs", when)
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-security-token"] == "tok=="


def test_names_and_reading_back() -> None:
    assert ec2_logs.default_log_group("my proj") == "/orch/my-proj"
    config = ec2_logs.shipper_config(
        region="eu-west-1", group="/orch/p", machine="big", job="train", metadata_url="http://x"
    )
    assert config["stream"] == "big/train/{started}" and config["endpoint"] is None
    assert ec2_logs.latest_stream(["big/train/99", "big/train/100", "big/train/x"]) == (
        "big/train/100"
    )
    assert ec2_logs.latest_stream([]) is None
    events = [{"message": "a"}, {"message": "b"}, {"message": "c"}]
    assert ec2_logs.join_events(events) == "a\nb\nc\n"
    assert ec2_logs.join_events(events, tail=2) == "b\nc\n"
    assert ec2_logs.join_events(events, tail=0) == ""


def test_install_script_installs_once_and_writes_the_jobs_config(tmp_path: Path) -> None:
    job = tmp_path / "logs" / "train"
    job.mkdir(parents=True)
    config = {"region": "r", "group": "g", "stream": "s/{started}", "metadata_url": "http://m"}
    script = ec2_logs.install_script("v1", "print('shipper')\n", config)
    env = {**os.environ, "HOME": str(tmp_path), "D": str(job)}
    for _ in range(2):
        done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    shipped = tmp_path / ec2_logs.SHIPPER_DIR / ec2_logs.SHIPPER_FILE
    assert shipped.read_text() == "print('shipper')\n"
    assert json.loads((job / "logship.json").read_text()) == config
    assert (tmp_path / ".orch" / "logship").stat().st_mode & 0o077 == 0
