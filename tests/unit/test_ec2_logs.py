"""CloudWatch job logs, the parts that need no AWS: the shipper's SigV4 signature (checked
against botocore's own signer), names, the install script, reading events back."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

from remote_config import ec2_logs
from sidecar.machines.ec2.log_shipper import Shipper, sign_v4

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


def _follower(job: Path) -> Shipper:
    (job / "meta").write_text("started=7\n")
    config = {
        "region": "us-east-1",
        "metadata_url": "http://127.0.0.1:9",
        "stream": "m/j/{started}",
    }
    return Shipper(job, config)


def test_a_rotation_is_seen_even_when_run_log_grew_back_past_the_old_offset(
    tmp_path: Path,
) -> None:
    """Copy-then-truncate, then the job writes more than was read before the rotation: the
    size alone cannot tell, the new run.log.1 does. Every line arrives once, in order."""
    log, old = tmp_path / "run.log", tmp_path / "run.log.1"
    shipper = _follower(tmp_path)
    log.write_text("a\nb\n")
    assert shipper.read_new() == [b"a", b"b"]
    with log.open("a") as handle:
        handle.write("c\n")
    shutil.copy(log, old)  # the wrapper's rotation, step 1
    assert shipper.read_new() == []  # copied, not truncated yet: wait a round
    log.write_text("d-is-a-long-line\ne\n")  # truncated, then longer than the old offset
    assert shipper.read_new() == [b"c", b"d-is-a-long-line", b"e"]
    with log.open("a") as handle:
        handle.write("f\n")
    assert shipper.read_new() == [b"f"]
    shutil.copy(log, old)  # a second rotation rewrites run.log.1 in place
    log.write_text("g\n")
    assert shipper.read_new() == [b"g"]
