"""Remote jobs on real tmux, on both backends: the embedded local machine and a real OpenSSH
sshd on 127.0.0.1 (the same tests, parametrized), through the Orchestrator and the real CLI."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from remote_config import job_scripts as js
from remote_config.jobs import JobInfo, command_text
from sidecar.app import Orchestrator
from tests.helpers import clean_remote, job_names, own_remote_dir, run_orch, sync_toml

pytestmark = pytest.mark.integration

JOBS_TOML = "[jobs]\nstop_grace_seconds = 2\n"


@dataclass
class Backend:
    kind: str
    orch: Orchestrator
    home: Path  # the remote home, as seen from this (same) computer
    project: Path

    @property
    def workdir(self) -> Path:
        remote = self.orch.config.remote_dir
        return self.home / remote.removeprefix("~/")

    def cli(self, *args: str, timeout: float = 60) -> object:
        return run_orch(*args, cwd=self.project, timeout=timeout)

    async def shell(self, script: str) -> str:
        target = await self.orch.ssh_target()
        result = await self.orch.pool.run(target, "sh -s", input=script, timeout=30)
        assert result.exit_status == 0, result.stderr
        return result.stdout


@pytest.fixture(params=["local", "sshd"])
async def backend(
    request: pytest.FixtureRequest, orch_home: Path, project: Path
) -> AsyncIterator[Backend]:
    if request.param == "local":
        (project / "orch.toml").write_text(JOBS_TOML)
        orch = Orchestrator(cwd=project)
        await orch.up()
        home = orch.provider().home  # type: ignore[attr-defined]
    else:
        sshd = request.getfixturevalue("sshd")
        remote_dir = own_remote_dir()
        (project / "orch.toml").write_text(
            '[project]\ndefault_machine = "box"\n'
            + JOBS_TOML
            + sync_toml(remote_dir)
            + sshd.machine_toml()
        )
        orch = Orchestrator(cwd=project)
        await orch.up()
        home = sshd.home
        before = await job_names(orch)
    b = Backend(request.param, orch, home, project)
    try:
        yield b
    finally:
        if request.param == "local":  # its own home: kill every job and orch's tmux server
            await b.shell(js.reset_script())
        else:  # the shared sshd user: only this test's jobs and folder
            await clean_remote(orch, before, [remote_dir, f"~/.orch/snapshots/{project.name}"])
        await orch.close()
        if request.param == "local":
            await orch.down()


def _remote_tails(job: str) -> list[int]:
    """Pids of `tail -f` processes on a job's log (the remote is this computer)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv[0] == b"tail"
            and b"-f" in argv
            and argv[-2].endswith(f"/logs/{job}/run.log".encode())
        ):
            found.append(int(proc.name))
    return found


async def _wait(
    orch: Orchestrator, done: Callable[[dict[str, JobInfo]], bool], timeout: float = 30
) -> dict[str, JobInfo]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = {j.name: j for j in await orch.jobs_status()}
        if done(jobs):
            return jobs
        assert time.monotonic() < deadline, f"timed out; jobs: {jobs}"
        await asyncio.sleep(0.2)


# -- the core workflow ---------------------------------------------------------------------
async def test_run_status_follow_stop(backend: Backend) -> None:
    orch = backend.orch
    job = await orch.jobs_run(
        "ticker", 'i=0; while :; do echo "tick $i"; i=$((i+1)); sleep 0.2; done'
    )
    assert job.state == "running" and job.pid
    assert job.command.startswith("i=0; while")
    seen = ""
    follow = orch.jobs_follow("ticker")
    async for chunk in follow:
        seen += chunk
        if "tick 3\n" in seen:
            assert _remote_tails("ticker")  # the follower's remote `tail -f`
            break
    await follow.aclose()  # type: ignore[attr-defined]
    assert seen.startswith("tick 0\n")
    # The remote `tail -f` of a follower that went away ends within seconds.
    deadline = time.monotonic() + 10
    while _remote_tails("ticker"):
        assert time.monotonic() < deadline, "the remote tail -f outlived its follower"
        await asyncio.sleep(0.2)

    # A follower started now sees lines written after it started, and ends when the job does.
    got: list[str] = []

    async def collect() -> str:
        async for chunk in orch.jobs_follow("ticker", tail=1):
            got.append(chunk)
        return "".join(got)

    follower = asyncio.create_task(collect())
    deadline = time.monotonic() + 20
    while "".join(got).count("\n") < 4:  # the follower is receiving new lines
        assert time.monotonic() < deadline, "the follower saw no new lines"
        await asyncio.sleep(0.05)
    stopped = await orch.jobs_stop("ticker")
    text = await asyncio.wait_for(follower, timeout=20)
    assert stopped.state == "stopped" and stopped.exit_code == 130  # SIGINT
    numbers = [int(line.split()[1]) for line in text.splitlines()]
    assert len(numbers) >= 3 and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert (backend.home / "logs" / "ticker" / "run.log").read_text().endswith(text)
    again = await orch.jobs_stop("ticker")  # stopping a stopped job changes nothing
    assert again.state == "stopped" and again.exit_code == 130


async def test_three_jobs_in_parallel_with_per_job_memory(backend: Backend) -> None:
    orch = backend.orch
    hold = "import time; x = b'm' * ({} << 20); print('ready', flush=True); time.sleep(60)"
    await orch.jobs_run("small", ["python3", "-c", hold.format(20)])
    await orch.jobs_run("large", ["python3", "-c", hold.format(90)])
    # A job whose memory lives in two child processes: the whole tree is counted.
    tree = f'python3 -c "{hold.format(30)}" & python3 -c "{hold.format(30)}" & wait'
    await orch.jobs_run("tree", tree)
    mib = 1 << 20
    jobs = await _wait(
        orch,
        lambda j: (
            all(j[n].state == "running" for n in ("small", "large", "tree"))
            and (j["small"].rss_bytes or 0) > 20 * mib
            and (j["large"].rss_bytes or 0) > 90 * mib
            and (j["tree"].rss_bytes or 0) > 60 * mib
        ),
    )
    assert 20 * mib < (jobs["small"].rss_bytes or 0) < 60 * mib
    assert (jobs["large"].rss_bytes or 0) < 140 * mib
    assert (jobs["tree"].rss_bytes or 0) < 110 * mib
    status = await orch.status()
    assert {j.name for j in status.jobs} == {"small", "large", "tree"}
    table = backend.cli("status")
    assert table.returncode == 0, table.stderr  # type: ignore[attr-defined]
    for header in ("NAME", "STATE", "STARTED", "MEMORY", "CPU", "DURATION", "EXIT"):
        assert header in table.stdout  # type: ignore[attr-defined]
    assert "MiB" in table.stdout  # type: ignore[attr-defined]


async def test_exit_codes(backend: Backend) -> None:
    orch = backend.orch
    await orch.jobs_run("zero", "exit 0")
    await orch.jobs_run("one", ["sh", "-c", "echo failing >&2; exit 1"])
    await orch.jobs_run("nine", "echo bye; kill -9 $$")
    jobs = await _wait(orch, lambda j: all(x.state != "running" for x in j.values()))
    assert (jobs["zero"].state, jobs["zero"].exit_code) == ("succeeded", 0)
    assert (jobs["one"].state, jobs["one"].exit_code) == ("failed", 1)
    assert (jobs["nine"].state, jobs["nine"].exit_code) == ("failed", 137)
    assert await orch.jobs_logs("one") == "failing\n"  # stderr goes to the log too
    assert jobs["zero"].ended and jobs["zero"].duration_s is not None
    data = json.loads(backend.cli("status", "--json").stdout)  # type: ignore[attr-defined]
    codes = {j["name"]: (j["state"], j["exit_code"]) for j in data["jobs"]}
    assert codes == {"zero": ("succeeded", 0), "one": ("failed", 1), "nine": ("failed", 137)}


async def test_jobs_outlive_the_connection_and_the_process(backend: Backend) -> None:
    started = backend.cli(
        "run", "survivor", "--", "sh", "-c", "while :; do date +%s%N; sleep 0.1; done"
    )
    assert started.returncode == 0, started.stderr  # type: ignore[attr-defined]
    # Kill this process's connection outright, then look again through a fresh one.
    target = await backend.orch.ssh_target()
    (await backend.orch.pool.connection(target)).abort()
    backend.orch.pool.drop(target.alias)
    await asyncio.sleep(0.5)
    fresh = Orchestrator(cwd=backend.project)
    try:
        jobs = {j.name: j for j in await fresh.jobs_status()}
        assert jobs["survivor"].state == "running"
        log = backend.home / "logs" / "survivor" / "run.log"
        size = log.stat().st_size
        await asyncio.sleep(0.6)
        assert log.stat().st_size > size  # still writing
    finally:
        await fresh.close()
    # A new CLI process rediscovers it too, and stops it.
    listed = json.loads(backend.cli("status", "--json").stdout)  # type: ignore[attr-defined]
    assert [j["state"] for j in listed["jobs"]] == ["running"]
    stop = backend.cli("stop", "survivor")
    assert stop.returncode == 0 and "stopped survivor" in stop.stdout  # type: ignore[attr-defined]
    assert log.exists() and log.stat().st_size > 0  # log files survive


async def test_follow_resumes_after_the_connection_drops(backend: Backend) -> None:
    orch = backend.orch
    await orch.jobs_run("counter", "for i in $(seq 1 60); do echo line-$i; sleep 0.05; done")
    target = await orch.ssh_target()
    text, dropped = "", False
    async for chunk in orch.jobs_follow("counter"):
        text += chunk
        if not dropped and "line-10\n" in text:
            (await orch.pool.connection(target)).abort()
            dropped = True
    assert dropped
    assert text == "".join(f"line-{i}\n" for i in range(1, 61))  # nothing lost, nothing twice


async def test_status_shell_reopens_after_the_connection_drops(backend: Backend) -> None:
    orch = backend.orch
    await orch.jobs_run("steady", "sleep 60")
    first = await orch.jobs_status()
    target = await orch.ssh_target()
    (await orch.pool.connection(target)).abort()  # the persistent status shell dies with it
    again = await orch.jobs_status()
    assert [(j.name, j.state, j.pid) for j in again] == [(j.name, j.state, j.pid) for j in first]


async def test_replace_restart_and_rm(backend: Backend) -> None:
    orch = backend.orch
    await orch.jobs_run("svc", "echo first; sleep 30")
    again = backend.cli("run", "svc", "--", "true")
    assert again.returncode == 6 and "already running" in again.stderr  # type: ignore[attr-defined]
    replaced = await orch.jobs_run("svc", "echo second; sleep 30", replace=True)
    assert replaced.state == "running" and "second" in replaced.command
    await _wait(orch, lambda j: "second" in (backend.home / "logs/svc/run.log").read_text())
    busy = backend.cli("rm", "svc")
    assert busy.returncode == 6 and "stop it first" in busy.stderr  # type: ignore[attr-defined]
    restarted = await orch.jobs_restart("svc")
    assert restarted.state == "running" and "second" in restarted.command
    history = list((backend.home / "logs/svc/history").iterdir())
    assert len(history) == 2  # the earlier runs' logs are kept
    await orch.jobs_stop("svc")
    assert backend.cli("rm", "svc").returncode == 0  # type: ignore[attr-defined]
    assert all(j.name != "svc" for j in await orch.jobs_status())
    assert (backend.home / "logs/svc/run.log").exists()  # logs kept
    assert backend.cli("rm", "svc", "--purge").returncode == 0  # type: ignore[attr-defined]
    assert not (backend.home / "logs/svc").exists()


async def test_env_workdir_and_code_staleness(backend: Backend) -> None:
    (backend.project / "orch.toml").write_text(
        (backend.project / "orch.toml")
        .read_text()
        .replace("[jobs]\n", '[jobs]\nenv = { FROM_TOML = "toml value", OVER = "toml" }\n')
    )
    backend.orch.reload_config()
    orch = backend.orch
    job = await orch.jobs_run(
        "envy",
        'echo "$FROM_TOML|$OVER|$ORCH_JOB|$(pwd)"; sleep 30',
        env={"OVER": "cli $(not expanded)"},
    )
    assert job.code_version and job.code_version.startswith("tree:") and not job.code_stale
    await _wait(orch, lambda j: "|" in (backend.home / "logs/envy/run.log").read_text())
    line = (backend.home / "logs/envy/run.log").read_text().strip()
    assert line == f"toml value|cli $(not expanded)|envy|{backend.workdir}"
    await backend.shell(f"echo 'print(1)' > {backend.workdir}/train.py")
    jobs = await _wait(orch, lambda j: j["envy"].code_stale)
    assert jobs["envy"].state == "running"
    status = backend.cli("status")
    assert "stale" in status.stdout and "orch restart envy" in status.stdout  # type: ignore[attr-defined]
    # The sync generation, when present, is what identifies the code.
    await backend.shell(
        f"mkdir -p {backend.workdir}/.orch && echo 42 > {backend.workdir}/.orch/generation"
    )
    # A generation this computer's sync did not write: no snapshot is made from it.
    from sidecar.sync.snapshot import StaleTree

    with pytest.raises(StaleTree):
        await orch.jobs_restart("envy")
    restarted = await orch.jobs_restart("envy", snapshot=False)
    assert restarted.code_version == "gen:42" and not restarted.code_stale


async def test_lost_jobs_say_why(backend: Backend) -> None:
    orch = backend.orch
    job = await orch.jobs_run("doomed", "sleep 60")
    await orch.jobs_run("rebooted", "sleep 60")
    # Everything of the job dies at once without a chance to record an exit status.
    os.killpg(job.pid or 0, signal.SIGKILL)
    meta = backend.home / "logs" / "rebooted" / "meta"
    meta.write_text(meta.read_text().replace("boot=", "boot=before-"))
    jobs = await _wait(orch, lambda j: j["doomed"].state == "lost")
    assert "no exit status" in (jobs["doomed"].detail or "")
    assert jobs["rebooted"].state == "lost" and "rebooted" in (jobs["rebooted"].detail or "")
    table = backend.cli("status").stdout  # type: ignore[attr-defined]
    assert "note: doomed is lost" in table and "rebooted" in table
    # Without its tmux server a job keeps running (the remote files say so), and can be stopped.
    await orch.jobs_run("orphan", "sleep 60")
    await backend.shell(f'{js.SOCKET}; tmux -S "$S" kill-server')
    jobs = await _wait(orch, lambda j: "tmux server is gone" in (j["orphan"].detail or ""))
    assert jobs["orphan"].state == "running"
    assert "tmux server is gone" in backend.cli("status").stdout  # type: ignore[attr-defined]
    stopped = await orch.jobs_stop("orphan")
    assert stopped.state == "stopped" and stopped.exit_code == 130


# -- bad input -----------------------------------------------------------------------------
NASTY = [
    "$(touch pwned)",
    "`touch pwned`",
    "a;b",
    "it's",
    'say "hi"',
    "two\nlines",
    "sp ace",
    "ünï©ødé",
    "-n",
    "*",
]


async def test_commands_run_exactly_as_written(backend: Backend) -> None:
    orch = backend.orch
    await orch.jobs_run("argv", ["printf", "[%s]\\n", *NASTY])
    r = backend.cli("run", "argv-cli", "--", "printf", "[%s]\\n", *NASTY)
    assert r.returncode == 0, r.stderr  # type: ignore[attr-defined]
    await orch.jobs_run("line", "echo \"$((6*7))\" '$(echo nested)' `echo once`")
    await orch.jobs_run("dash", ["-n"])  # a leading '-' is a program name, run as written
    big = "x" * 10_000
    await orch.jobs_run("big", ["printf", "%s", big])
    await orch.jobs_run("bigline", f"printf '%s' {big}")
    await _wait(orch, lambda j: all(x.state != "running" for x in j.values()))
    expected = "".join(f"[{a}]\n" for a in NASTY)
    assert await orch.jobs_logs("argv") == expected
    assert await orch.jobs_logs("argv-cli") == expected
    assert await orch.jobs_logs("line") == "42 $(echo nested) once\n"
    assert await orch.jobs_logs("big") == big
    assert await orch.jobs_logs("bigline") == big
    listed = {j.name: j for j in await orch.jobs_status()}
    assert listed["bigline"].command.endswith("…") and len(listed["bigline"].command) < 4200
    assert listed["argv"].command == command_text(["printf", "[%s]\\n", *NASTY])
    assert "-n" in await orch.jobs_logs("dash")  # "command not found", from exactly one shell
    assert not list(backend.home.rglob("pwned"))


BAD_NAMES = ["$(touch pwned)", "`id`", "a;b", "a'b", 'a"b', "a\nb", "a b", "jöb", "..", "x" * 65]


def test_bad_names_are_refused_before_anything_runs(
    orch_home: Path,
    project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sidecar.cli.main import main

    monkeypatch.chdir(project)
    for name in BAD_NAMES:  # in-process: the same CLI code, without a process per name
        assert main(["run", "--", name, "--", "touch", "pwned"]) == 2, name
        err = capsys.readouterr().err
        assert "invalid job name" in err and "Traceback" not in err, (name, err)
    dash = run_orch("run", "-x", "--", "true", cwd=project)  # a leading '-' reads as an option
    assert dash.returncode == 2
    # Refused before any machine was touched: the local machine was never even started.
    assert not (orch_home / "machines" / "local" / "home").exists()
    assert not list(project.rglob("pwned"))


async def test_unknown_jobs_get_a_clear_error_and_exit_code(backend: Backend) -> None:
    for args in (("logs", "nope"), ("stop", "nope"), ("rm", "nope"), ("attach", "nope")):
        r = backend.cli(*args)
        assert r.returncode == 4, (args, r.stderr)  # type: ignore[attr-defined]
        assert "no job named 'nope'" in r.stderr  # type: ignore[attr-defined]
        assert "hint: list the jobs with: orch status" in r.stderr  # type: ignore[attr-defined]


# -- attach through the real OpenSSH client ------------------------------------------------
def _drive_pty(
    argv: list[str], until: bytes, keys: list[bytes], timeout: float = 30
) -> tuple[int, bytes]:
    """Run argv on a terminal; once `until` shows, type `keys` (again every few seconds: tmux
    may swallow keys while it waits for answers to its terminal queries) until it exits."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real ssh client on a terminal
        os.environ["TERM"] = "xterm"
        os.execvp(argv[0], argv)
    out, seen_at, typed_at = b"", 0.0, 0.0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                out += data
            now = time.monotonic()
            if not seen_at and until in out:
                seen_at = now
            if seen_at and now - seen_at > 0.5 and now - typed_at > 3:
                for key in keys:
                    os.write(fd, key)
                    time.sleep(0.2)
                typed_at = now
        else:
            os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), out
    finally:
        os.close(fd)


async def test_attach_opens_the_jobs_tmux_session(backend: Backend) -> None:
    orch = backend.orch
    await orch.jobs_run("attachable", "while :; do echo attach-marker; sleep 0.3; done")
    argv = await orch.attach_argv("attachable")
    assert argv[0] == "ssh" and "-tt" in argv and str(orch.layout.ssh_config) in argv
    try:
        code, out = await asyncio.to_thread(_drive_pty, argv, b"attach-marker", [b"\x02", b"d"])
        assert b"attach-marker" in out and b"detached" in out, (code, out[-400:])
        assert code == 0
        jobs = {j.name: j for j in await orch.jobs_status()}
        assert jobs["attachable"].state == "running"  # detaching leaves it running
    finally:
        target = await orch.ssh_target()
        await asyncio.to_thread(
            os.system,
            f"ssh -F '{orch.layout.ssh_config}' -O exit {target.alias} >/dev/null 2>&1",
        )


async def test_status_of_a_stopped_machine_has_no_jobs(orch_home: Path, project: Path) -> None:
    r = run_orch("status", "--json", cwd=project)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["machine"]["state"] == "stopped" and data["jobs"] == []


async def test_reloading_orch_toml_ends_the_old_status_shell(backend: Backend) -> None:
    """The job backend keeps one remote shell for status reads; an orch.toml change drops the
    backend, and with it that shell (a window editing orch.toml must not pile up shells)."""
    orch = backend.orch
    await orch.jobs_status()
    shells = [getattr(j, "_shell", None) for j in orch._jobs.values()]
    procs = [s._proc for s in shells if s is not None and getattr(s, "_proc", None) is not None]
    if not procs:
        pytest.skip("this machine's status reads use OpenSSH's master, no shell is kept")
    orch.reload_config()
    for proc in procs:
        await asyncio.wait_for(proc.wait_closed(), 5)
    assert await orch.jobs_status() is not None  # a new shell answers
