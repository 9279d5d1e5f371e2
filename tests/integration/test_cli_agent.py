"""The `orch` CLI as a thin client of the orch agent (the real CLI, the real agent, the
embedded local machine).

Its commands that need a connection run in the agent: the CLI process never imports asyncssh
(checked inside each CLI process), the agent holds the one connection to the machine, and the
text and `--json` each command prints are the ones of the in-process path (`ORCH_NO_AGENT=1`),
errors included (same message, hint and exit status; a malformed orch.toml's per-line list).
`orch logs -f` goes on where it was when the agent is killed with SIGKILL mid-stream: a new
agent is started and every line arrives exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, run_orch, run_orch_checked
from tests.integration.test_agent import established_to, machine_port

pytestmark = pytest.mark.integration


LIGHT = ("status", "logs", "run", "stop", "restart", "rm")  # (cli/main.py, cli/fast_jobs.py)


def orch(project: Path, *args: str, agent: bool = True, rc: int = 0) -> tuple[str, str]:
    """One CLI command; (stdout, stderr). Through the agent it must not import asyncssh."""
    done, heavy = run_orch_checked(*args, cwd=project, env={} if agent else {"ORCH_NO_AGENT": "1"})
    assert done.returncode == rc, f"orch {' '.join(args)}: {done.stdout}{done.stderr}"
    if agent:  # no connection of its own; the light paths' commands not even pydantic
        assert not {"asyncssh", "cryptography"} & set(heavy), f"orch {args} imported {heavy}"
        if args[0] in LIGHT and rc == 0:
            assert heavy == [], f"orch {args} imported {heavy}"
    return done.stdout, done.stderr


def agent_pid(home: Path) -> int:
    pid = json.loads((home / "agent" / "state.json").read_text())["pid"]
    assert isinstance(pid, int) and Path(f"/proc/{pid}").exists()
    return pid


def wait_for(test: object, timeout: float = 10.0) -> None:
    began = time.monotonic()
    while not test():  # type: ignore[operator]
        assert time.monotonic() - began < timeout, "not within the timeout"
        time.sleep(0.05)


def test_cli_commands_run_in_the_agent_and_print_what_the_in_process_path_prints(
    orch_home: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "orch.toml").write_text("[jobs]\nsnapshot = false\n")
    monkeypatch.setenv("ORCH_SSH_USER_CONFIG", str(project.parent / "user-ssh-config"))
    try:
        out, _ = orch(project, "up")
        assert out.startswith("local (local): running, at 127.0.0.1:")
        agent = agent_pid(orch_home)
        out, _ = orch(project, "run", "done", "--", "sh", "-c", "echo one; echo two")
        assert out.startswith("started done (") and out.endswith(
            "follow it with: orch logs done -f\n"
        )
        wait_for(lambda: "two" in orch(project, "logs", "done")[0])
        orch(project, "run", "long", "--", "sleep", "60")

        # Same text, --json and errors on both paths.
        for args, rc in [
            (("logs", "done"), 0),
            (("logs", "done", "-f"), 0),
            (("stop", "done"), 0),
            (("stop", "done", "--json"), 0),
            (("rm", "no-such-job", "--purge"), 4),
            (("--project-dir", str(project), "restart", "no-such-job", "--json"), 4),
            (("idle", "status", "--json"), 0),
            (("stop", "no-such-job"), 4),
            (("logs", "no-such-job"), 4),
            (("run", "bad/name", "--", "true"), 2),
            (("down",), 6),  # a job runs: no terminal to ask on, refused
            (("ssh", "--", "echo", "via-ssh"), 0),
        ]:
            via_agent = orch(project, *args, rc=rc)
            in_process = orch(project, *args, agent=False, rc=rc)
            assert via_agent == in_process, args
        assert orch(project, "logs", "done")[0] == "one\ntwo\n"
        assert orch(project, "ssh", "--", "echo", "via-ssh")[0] == "via-ssh\n"
        down = orch(project, "down", rc=6)[1]
        assert "long" in down and "--force" in down

        machines = orch(project, "machines", "--json")[0]
        assert [m["machine"] for m in json.loads(machines)["machines"]] == ["local"]
        written = orch(project, "ssh-config", "write")[0]
        assert "wrote" in written or "unchanged" in written
        out, _ = orch(project, "restart", "done")
        assert out.startswith("restarted done (")
        assert orch(project, "stop", "long")[0].startswith("stopped long (exit status")
        assert orch(project, "rm", "long")[0] == (
            "removed long (its logs are kept in ~/logs/long on the machine)\n"
        )

        # Other settings than the agent's (another AWS profile): run in-process, same output.
        other, heavy = run_orch_checked(
            "logs", "done", cwd=project, env={"AWS_PROFILE": "elsewhere"}
        )
        assert other.returncode == 0 and other.stdout == "one\ntwo\n", other.stderr
        assert "asyncssh" in heavy  # it read the log itself
        other, heavy = run_orch_checked(
            "restart", "done", "--json", cwd=project, env={"AWS_PROFILE": "elsewhere"}
        )
        assert other.returncode == 0 and json.loads(other.stdout)["name"] == "done"
        assert "asyncssh" in heavy, other.stderr  # the light path left it to this process

        # One agent did it all over one connection to the machine.
        assert agent_pid(orch_home) == agent
        assert established_to(agent, machine_port(orch_home)) == 1
        out, _ = orch(project, "down", "--force")
        assert out == "local (local): stopped\n"
    finally:
        run_orch("down", "--force", cwd=project)


def test_a_malformed_orch_toml_is_the_same_per_line_error_through_the_agent(
    orch_home: Path, project: Path
) -> None:
    (project / "orch.toml").write_text('[jobs]\nsnapshot = "maybe"\n\n[nope]\nx = 1\n')
    via_agent = orch(project, "run", "x", "--", "true", rc=3)
    in_process = orch(project, "run", "x", "--", "true", agent=False, rc=3)
    assert via_agent == in_process
    message = via_agent[1]
    assert "orch.toml:2" in message and "orch.toml:4" in message, message


def test_logs_follow_goes_on_after_the_agent_is_killed(orch_home: Path, project: Path) -> None:
    (project / "orch.toml").write_text("[jobs]\nsnapshot = false\n")
    orch(project, "up")
    try:
        gate = project / "gate"  # the job's second half waits for this file
        script = (
            "for i in $(seq 1 50); do echo line-$i; done; "
            f"while [ ! -e {gate} ]; do sleep 0.05; done; "
            "for i in $(seq 51 100); do echo line-$i; done"
        )
        orch(project, "run", "tick", "--", "sh", "-c", script)
        follow = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli.main", "logs", "tick", "-f"],
            cwd=project,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert follow.stdout is not None
            for _ in range(50):  # the first half arrived through the first agent
                assert follow.stdout.readline().startswith("line-")
            old = agent_pid(orch_home)
            os.kill(old, signal.SIGKILL)
            gate.touch()
            out, err = follow.communicate(timeout=30)
        finally:
            if follow.poll() is None:
                follow.kill()
        assert follow.returncode == 0, err
        rest = out.splitlines()
        assert rest == [f"line-{i}" for i in range(51, 101)], rest  # nothing lost or repeated
        assert agent_pid(orch_home) != old  # a new agent streamed the second half
    finally:
        run_orch("down", "--force", cwd=project)
