"""The status read's cache (issue 12, item 9): the real status script under `sh` on this
machine's /proc (HOME is a temporary folder), read twice: the second read skips what cannot
have changed and must give the same jobs; any start, restart or end is seen at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remote_config import job_scripts as js
from remote_config.jobs import JobInfo, StatusCache, jobs_from_snapshot, parse_snapshot

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc, as the remote script does"
)
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
BOOT = BOOT_ID.read_text().strip() if BOOT_ID.exists() else ""


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    made: list[subprocess.Popen[bytes]] = []
    yield made
    for proc in made:
        os.killpg(proc.pid, signal.SIGKILL)  # the shell and its child
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _start_tree(made: list[subprocess.Popen[bytes]]) -> tuple[int, str]:
    """A process with a child (like a job's wrapper): its pid and its "pid" file line."""
    proc = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo started; wait"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    made.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == b"started\n"  # child forked
    stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return proc.pid, f"{proc.pid} {stat[19]} {proc.pid} 1\n"


def _rss_pages(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[21])


def _child(pid: int) -> int:
    (child,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(child)


def _job(home: Path, name: str, command: str, pid_line: str, result: str | None) -> None:
    folder = home / "logs" / name
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("result", "pid"):
        (folder / stale).unlink(missing_ok=True)
    (folder / "cmd.sh").write_text(command + "\n")
    (folder / "meta").write_text(
        f"started={int(time.time())}\nboot={BOOT}\ncode=gen:7\npagesize=4096\nmode=live\n"
    )
    (folder / "pid").write_text(pid_line)
    if result is not None:
        (folder / "result").write_text(result)


def _read(home: Path, cache: StatusCache | None) -> tuple[str, list[JobInfo]]:
    body = js.status_body("~/work/p", cache.keys() if cache else None)
    out = subprocess.run(
        ["sh", "-s"],
        input=js.status_prelude() + body,
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home)},
        timeout=30,
        check=True,
    ).stdout
    snap = parse_snapshot(out)
    if cache is not None:
        cache.apply(snap)
    return out, jobs_from_snapshot(snap)


def _shown(jobs: list[JobInfo]) -> list[tuple[object, ...]]:
    return [(j.name, j.state, j.command, j.code_version, j.exit_code, j.pid) for j in jobs]


def test_a_second_read_sends_only_what_changes_and_gives_the_same_jobs(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    pid, pid_line = _start_tree(procs)
    foreign, _ = _start_tree(procs)  # a process of no job: its tree is not sent
    _job(tmp_path, "train", "python train.py", pid_line, None)
    _job(tmp_path, "done", "echo hi", "1 1 1 1\n", "exit_code=0\nended=1\n")
    cache = StatusCache()

    first, jobs = _read(tmp_path, cache)
    assert "train/meta:" in first and "done/cmd.sh:echo hi" in first
    (tree,) = first.split("@tree\n")[1].splitlines()[:-1]  # one line per running job…
    root, _ppid, rss, _cpu, _start, count = tree.split()
    assert (int(root), int(count)) == (pid, 2)  # …the wrapper and its child, summed…
    pages = sum(_rss_pages(p) for p in (pid, _child(pid)))
    assert abs(int(rss) - pages) <= pages // 20
    assert str(foreign) not in first  # …and no other process of the machine

    second, again = _read(tmp_path, cache)
    assert "meta:" not in second and "cmd.sh:" not in second and "pid:" not in second
    assert "train/same:1" in second and "done/same:1" in second
    assert len(second) < len(first) / 2
    assert _shown(again) == _shown(jobs)
    states = {j.name: j.state for j in again}
    assert states == {"train": "running", "done": "succeeded"}
    assert next(j for j in again if j.name == "train").rss_bytes


def test_a_restart_or_an_end_is_read_in_full_at_once(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    _pid, pid_line = _start_tree(procs)
    _job(tmp_path, "train", "python train.py", pid_line, None)
    cache = StatusCache()
    _read(tmp_path, cache)
    _read(tmp_path, cache)

    # Restarted with another command: a new wrapper, so a new key.
    new_pid, new_line = _start_tree(procs)
    _job(tmp_path, "train", "python train.py --resume", new_line, None)
    _out, (job,) = _read(tmp_path, cache)
    assert (job.command, job.pid, job.state) == ("python train.py --resume", new_pid, "running")

    # It ends: the result file changes the key; the state is read from it.
    (tmp_path / "logs" / "train" / "result").write_text("exit_code=3\nended=2\n")
    out, (job,) = _read(tmp_path, cache)
    assert "train/meta:" in out and (job.state, job.exit_code) == ("failed", 3)
    assert job.command == "python train.py --resume"
    _out, (job,) = _read(tmp_path, cache)
    assert (job.state, job.command) == ("failed", "python train.py --resume")


def test_keys_that_the_remote_does_not_recognise_get_a_full_read(tmp_path: Path) -> None:
    _job(tmp_path, "done", "echo hi", "1 1 1 1\n", "exit_code=0\nended=1\n")
    cache = StatusCache()
    _read(tmp_path, cache)
    cache.entries = {job: ("stale-key", files) for job, (_key, files) in cache.entries.items()}
    out, (job,) = _read(tmp_path, cache)
    assert "done/meta:" in out and job.command == "echo hi"
    assert cache.keys()["done"] != "stale-key"


# A child forked by a thread other than the main one is listed only in that thread's
# /proc/PID/task/TID/children: the walk down the tree gives way to reading every process.
THREAD_FORKS = """
import subprocess, threading
def fork():  # stays alive: its child stays on its own list
    kid = subprocess.Popen(["sleep", "60"])
    print(kid.pid, flush=True)
    threading.Event().wait()
threading.Thread(target=fork, daemon=True).start()
threading.Event().wait()
"""


def test_a_child_forked_by_another_thread_is_counted(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", THREAD_FORKS], stdout=subprocess.PIPE, start_new_session=True
    )
    procs.append(proc)
    assert proc.stdout is not None
    kid = int(proc.stdout.readline())
    stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(") ", 1)[1].split()
    assert int(stat[17]) > 1  # several threads
    assert str(kid) not in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text()
    _job(tmp_path, "fork", "python fork.py", f"{proc.pid} {stat[19]} {proc.pid} 1\n", None)
    out, (job,) = _read(tmp_path, StatusCache())
    (tree,) = out.split("@tree\n")[1].splitlines()[:-1]
    assert tree.split()[0] == str(proc.pid) and tree.split()[-1] == "2"  # python and sleep
    assert job.state == "running"
    assert job.rss_bytes == sum(_rss_pages(p) for p in (proc.pid, kid)) * 4096


def test_a_reused_wrapper_pid_is_lost_and_not_walked(tmp_path: Path) -> None:
    # pid 1 with another start time: some other process now has the wrapper's pid.
    _job(tmp_path, "old", "echo hi", "1 999999999 1 1\n", None)
    out, (job,) = _read(tmp_path, StatusCache())
    (tree,) = out.split("@tree\n")[1].splitlines()[:-1]
    assert tree.split()[0] == "1" and tree.split()[-1] == "1"  # its tree was not read
    assert job.state == "lost" and job.rss_bytes is None
