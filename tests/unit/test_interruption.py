"""Spot interruption notices: the check (run for real against a stand-in IMDSv2 service on
127.0.0.1), its records, and jobs shown `interrupted` (not `lost`) by the status parser."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from remote_config import interruption as intr
from remote_config.jobs import jobs_from_snapshot, parse_snapshot
from remote_config.model import EC2Machine
from tests.imds import imds
from tests.unit.test_jobs_pure import NOW, SNAPSHOT

BOOT = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _check(home: Path, url: str) -> intr.CheckResult:
    done = subprocess.run(
        ["sh", "-c", intr.check_command(url)],
        env={**os.environ, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return intr.parse_check(done.stdout)


def test_the_check_reads_the_notice_with_a_token_and_records_it_once(tmp_path: Path) -> None:
    with imds() as service:
        quiet = _check(tmp_path, service.url)
        assert quiet.boot == BOOT and quiet.records == {} and quiet.current is None
        assert not (tmp_path / intr.RECORDS).exists()
        # IMDSv2: a token first, then the notice with it (the stand-in answers 401 without)
        assert service.requests[:2] == [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/spot/instance-action"),
        ]
        service.notice = {"action": "stop", "time": "2026-12-06T05:02:00Z"}
        seen = _check(tmp_path, service.url)
        notice = seen.current
        assert notice is not None and notice.boot == BOOT
        assert (notice.action, notice.time) == ("stop", "2026-12-06T05:02:00Z")
        again = _check(tmp_path, service.url + "/")
        assert again.current == notice  # recorded once per boot: the first sighting stays
    records = (tmp_path / intr.RECORDS).read_text().splitlines()
    assert len(records) == 1 and records[0].startswith(f"{BOOT} ")
    assert (tmp_path / ".orch").stat().st_mode & 0o077 == 0


def test_no_metadata_service_is_no_notice_and_records_survive(tmp_path: Path) -> None:
    (tmp_path / ".orch").mkdir()
    (tmp_path / intr.RECORDS).write_text("old-boot 1700000000 terminate 2023-11-14T22:15:00Z\n")
    result = _check(tmp_path, "http://127.0.0.1:9")  # nothing listens: refused at once
    assert result.boot == BOOT and result.current is None
    assert result.records["old-boot"].action == "terminate"


def test_a_hostile_notice_cannot_inject_record_fields(tmp_path: Path) -> None:
    with imds() as service:
        service.notice = {"action": "stop\nevil 1 2 3", "time": "x y"}
        notice = _check(tmp_path, service.url).current
    assert notice is not None and notice.action == "stopevil123" and notice.time == "xy"


def test_parse_ignores_malformed_records() -> None:
    text = "@boot B\n@interruption B nope stop T\n@interruption B 5 stop\n@other\n"
    assert intr.parse_check(text).records == {}
    assert intr.parse_record("B 5 stop T") == intr.Interruption(
        boot="B", seen_at=5, action="stop", time="T"
    )


def test_describe_names_what_aws_does() -> None:
    notice = intr.Interruption(boot="B", seen_at=1, action="terminate", time="T1")
    assert intr.describe(notice) == (
        "spot interruption: AWS will terminate the machine at T1 (2-minute notice)"
    )
    assert "orch restart NAME" in intr.job_detail(notice, running=False)
    assert intr.job_detail(notice, running=True).endswith("the job will be cut off")


def test_jobs_under_a_notice_and_after_it_are_interrupted_not_lost() -> None:
    # Notice during B1 (now): the running job is interrupted (still running, detail says so).
    during = SNAPSHOT.replace("@files\n", f"@interruption B1 {NOW - 5} stop T9\n@files\n", 1)
    jobs = {j.name: j for j in jobs_from_snapshot(parse_snapshot(during))}
    assert jobs["run"].state == "interrupted" and jobs["run"].pid == 500
    assert "will stop the machine at T9" in (jobs["run"].detail or "")
    assert jobs["gone"].state == "interrupted"  # killed as the machine went down
    assert jobs["ok"].state == "succeeded"  # finished before: untouched
    assert jobs["reboot"].state == "lost"  # boot B0 had no notice
    # The machine came back (boot B2): the jobs of B1 were cut off by the interruption.
    after = (
        during.replace("@boot B1", "@boot B2")
        .replace("reboot/meta:boot=B0", "reboot/meta:boot=B1")
        .replace("run/meta:boot=B1", "run/meta:boot=B1")
    )
    jobs = {j.name: j for j in jobs_from_snapshot(parse_snapshot(after))}
    assert jobs["run"].state == "interrupted" and jobs["run"].pid is None
    assert "cut off by a spot interruption (stop at T9)" in (jobs["run"].detail or "")
    assert jobs["reboot"].state == "interrupted"
    assert jobs["ok"].state == "succeeded"


def test_the_status_awk_prints_the_records(tmp_path: Path) -> None:
    from remote_config import job_scripts

    (tmp_path / ".orch").mkdir()
    (tmp_path / intr.RECORDS).write_text(f"{BOOT} {NOW} stop T5\n")
    (tmp_path / "logs").mkdir()
    done = subprocess.run(
        ["sh", "-c", job_scripts.status_script("~/proj")],
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    snap = parse_snapshot(done.stdout)
    assert snap.boot == BOOT and snap.interruptions[BOOT].time == "T5"


def test_metadata_url_is_a_checked_machine_setting() -> None:
    machine = EC2Machine(kind="ec2", metadata_url="http://127.0.0.1:8080/")
    assert machine.metadata_url == "http://127.0.0.1:8080"
    assert EC2Machine(kind="ec2").metadata_url == "http://169.254.169.254"
    with pytest.raises(ValidationError):
        EC2Machine(kind="ec2", metadata_url="http://x/; rm -rf ~")


def test_the_idle_agent_records_a_notice_with_the_laptop_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sidecar.idle.agent import Agent

    folder = tmp_path / ".orch" / "idle"
    folder.mkdir(parents=True)
    with imds() as service:
        service.notice = {"action": "stop", "time": "T7"}
        config = {
            "policy": {"idle_stop_s": 600.0, "warn_s": 60.0, "interval_s": 5},
            "hook": {"kind": "report"},
            "markers": [],
            "disable": ["gpu", "cpu", "vscode", "terminals", "tmux"],
            "notice_check": intr.check_command(service.url),
        }
        (folder / "config.json").write_text(json.dumps(config))
        monkeypatch.setenv("HOME", str(tmp_path))  # the check runs as the machine's user
        assert Agent(tmp_path).run(None, once=True) == 0
    [record] = (tmp_path / intr.RECORDS).read_text().splitlines()
    assert record.startswith(f"{BOOT} ") and record.endswith(" stop T7")
