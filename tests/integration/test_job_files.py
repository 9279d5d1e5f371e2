"""The job scripts run by a real sh + tmux against a throwaway $HOME: log rotation, log
retention and the short tmux socket used when the home path is too long for a unix socket."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remote_config import job_scripts as js
from remote_config.jobs import jobs_from_snapshot, parse_snapshot

pytestmark = pytest.mark.integration

WORKDIR = "~/work/proj"


def _sh(home: Path, script: str) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    return subprocess.run(
        ["sh", "-s"], input=script, capture_output=True, text=True, env=env, timeout=60
    )


def _kill_tmux(home: Path) -> None:
    assert _sh(home, js.reset_script()).returncode == 0


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "h"
    folder.mkdir()
    yield folder
    _kill_tmux(folder)


def _jobs(home: Path) -> dict[str, object]:
    out = _sh(home, js.status_script(WORKDIR))
    assert out.returncode == 0, out.stderr
    return {j.name: j for j in jobs_from_snapshot(parse_snapshot(out.stdout))}


def _wait(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_log_is_rotated_when_it_exceeds_the_cap(home: Path) -> None:
    script = js.start_script(
        "big",
        WORKDIR,
        "head -c 60000 /dev/zero | tr '\\0' x; echo; sleep 30",
        max_log_bytes=10_000,
        rotate_every_s=1,
    )
    assert _sh(home, script).returncode == 0
    log = home / "logs" / "big" / "run.log"
    rotated = home / "logs" / "big" / "run.log.1"
    _wait(rotated.exists)
    assert rotated.stat().st_size >= 60_000
    assert log.stat().st_size < 10_000
    stop = _sh(home, js.stop_script("big", WORKDIR, 2))
    assert stop.returncode == 0, stop.stderr


def test_retention_deletes_old_finished_jobs_and_old_runs_only(home: Path) -> None:
    logs = home / "logs"
    old_epoch = time.time() - 40 * 86400
    for name, files in {
        "old": ["meta", "result", "run.log"],
        "recent": ["meta", "result", "run.log"],
        "removed": ["run.log"],
        "keep": ["meta", "result", "history/1-run.log", "history/2-run.log"],
    }.items():
        for f in files:
            (logs / name / f).parent.mkdir(parents=True, exist_ok=True)
            (logs / name / f).write_text(f"started={int(old_epoch)}\n" if f == "meta" else "x\n")
    for path in (logs / "old" / "result", logs / "removed" / "run.log", logs / "removed"):
        os.utime(path, (old_epoch, old_epoch))
    os.utime(logs / "keep" / "history" / "1-run.log", (old_epoch, old_epoch))
    out = _sh(home, js.start_script("new", WORKDIR, "true", retention_days=30))
    assert out.returncode == 0, out.stderr
    assert not (logs / "old").exists()
    assert not (logs / "removed").exists()
    assert (logs / "recent" / "run.log").exists()
    assert not (logs / "keep" / "history" / "1-run.log").exists()
    assert (logs / "keep" / "history" / "2-run.log").exists()


def test_a_long_home_uses_a_short_private_socket(tmp_path: Path) -> None:
    home = tmp_path / ("deep" * 30)
    home.mkdir()
    try:
        out = _sh(home, js.start_script("j", WORKDIR, "echo from-long-home; sleep 20"))
        assert out.returncode == 0, out.stderr
        assert _jobs(home)["j"].state == "running"  # type: ignore[attr-defined]
        sock = _sh(home, f'{js.SOCKET}; printf %s "$S"').stdout
        assert sock.startswith("/tmp/orch-tmux-") and len(sock) < 100
        assert (Path(sock).parent.stat().st_mode & 0o777) == 0o700
        _wait(lambda: "from-long-home" in (home / "logs/j/run.log").read_text())
    finally:
        _kill_tmux(home)
