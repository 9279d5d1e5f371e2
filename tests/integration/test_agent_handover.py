"""Requests around an agent's end, with real agent processes (the CLI, the bridge that
`python -m sidecar` is, and `sidecar.agent`): a request that reaches a stopping agent is not
run there but in the next agent (the CLI's and a VS Code window's); one the agent was running
when it stopped is said to have maybe run and is not sent again; an agent stopped with
SIGSTOP bounds the bridge's writes and a CLI's wait for its answer, each saying what to do;
the window goes on after SIGCONT; `serve --detach` keeps stdout clean.

The stop is held open by a call the agent runs: `orch run` (or a window's command) on a
machine whose "SSH server" (a listener here) accepts and never speaks, so the agent's connect
waits; the agent lets it run for its grace (`ORCH_AGENT_STOP_GRACE_S`) before cutting it off.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar import agent_client as client
from tests.helpers import REPO, run_orch, stop_pid

pytestmark = pytest.mark.integration

GRACE_S = 1.5
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


class Silent:
    """A TCP listener on 127.0.0.1 that accepts and never answers (an SSH server that hangs)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.server.accept()[0])

    def close(self) -> None:
        self.server.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    listener = Silent()
    yield listener
    listener.close()


def wait_for(test: object, timeout: float = 10.0) -> None:
    began = time.monotonic()
    while not test():  # type: ignore[operator]
        assert time.monotonic() - began < timeout, "not within the timeout"
        time.sleep(0.02)


def silent_machine(project: Path, silent: Silent) -> None:
    """orch.toml with `box`, an SSH machine on the silent listener (its own client key)."""
    key = project.parent / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (project / "orch.toml").write_text(
        f'[machines.box]\nkind = "ssh"\nhost = "127.0.0.1"\nport = {silent.port}\n'
        f'identity_file = "{key}"\nhost_key = "{HOST_KEY}"\n'
    )


def hold_stop_open(project: Path, silent: Silent) -> tuple[subprocess.Popen[str], int]:
    """An agent (its pid) running `orch run j --machine box` (a CLI process, returned) that
    hangs on the silent machine; then asked to stop: it stays in its grace for GRACE_S."""
    silent_machine(project, silent)
    paths, info = client.ensure()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    up = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli.main", "run", "j", "--machine", "box", "--", "true"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: len(silent.accepted) == 1)  # the agent's connect is under way
    assert client.call(paths, {"op": "shutdown", "forget": False})["shutdown"]
    return up, int(info["pid"])


def test_a_request_to_a_stopping_agent_runs_in_the_next_one_and_a_cut_off_one_says_so(
    orch_home: Path, project: Path, silent: Silent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_AGENT_STOP_GRACE_S", str(GRACE_S))
    run, old = hold_stop_open(project, silent)
    try:
        paths = client.agent_paths(orch_home)
        # Stopping: a request is answered before anything is done, and is not run.
        with pytest.raises(client.AgentDown, match="stopping: the request was not run"):
            client.call(paths, {"op": "hello"})
        # The CLI's own calls: sent to the stopping agent, refused, sent to a new one.
        from sidecar.cli import fast_jobs

        fast_jobs._found[:] = [paths]  # (found before the stop began)
        with pytest.raises(Exception, match="the local machine is not running") as caught:
            fast_jobs._ask(str(project), "jobs_rm", "local", {"name": "x", "purge": True})
        assert "agent" not in str(caught.value)  # (the new agent ran it: its own error)
        new = client.hello(paths)["pid"]
        assert new != old
        # The call it ran when it stopped: cut off after the grace, said, never sent again.
        _, err = run.communicate(timeout=30)
        assert run.returncode != 0
        assert (
            "jobs_run: the orch agent stopped without an answer, after it got the request: " in err
        )
        assert "it may have run" in err, err
        assert "see `orch status` for what happened" in err, err
        assert len(silent.accepted) == 1  # not re-run in the new agent
        # A CLI process started meanwhile found the new agent and ran there.
        done = run_orch("rm", "x", "--machine", "local", "--purge", cwd=project)
        assert done.returncode == 5 and "the local machine is not running" in done.stderr
        assert client.hello(paths)["pid"] == new
    finally:
        if run.poll() is None:
            stop_pid(run.pid)


class Stdio:
    """A VS Code window's end of `python -m sidecar` (the bridge): LSP frames over pipes, its
    answers read by a thread; its stderr kept."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar"],
            cwd=project,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.answers: dict[Any, dict[str, Any]] = {}
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._errors, daemon=True).start()

    def _read(self) -> None:
        from sidecar.bridge_replay import read_message

        assert self.proc.stdout is not None
        while (body := read_message(self.proc.stdout)) is not None:
            message = json.loads(body)
            if "id" in message and "method" not in message:
                self.answers[message["id"]] = message

    def _errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.decode())

    def send(self, message: dict[str, Any]) -> None:
        from sidecar.bridge_replay import frame

        assert self.proc.stdin is not None
        self.proc.stdin.write(frame(json.dumps({"jsonrpc": "2.0", **message}).encode()))
        self.proc.stdin.flush()

    def answer(self, request_id: Any, timeout: float = 10.0) -> dict[str, Any]:
        wait_for(lambda: request_id in self.answers, timeout)
        return self.answers.pop(request_id)

    def command(
        self, request_id: int, command: str, arguments: dict[str, Any] | None = None
    ) -> None:
        params = {"command": command, "arguments": [arguments or {}]}
        self.send({"id": request_id, "method": "workspace/executeCommand", "params": params})


def test_a_stopped_agent_bounds_the_bridges_writes_and_the_window_goes_on(
    orch_home: Path, project: Path
) -> None:
    """SIGSTOP the agent under a window that then sends more than the socket holds: the
    bridge gives up on the write after ORCH_AGENT_STALL_S, says so, answers the
    window's request, and goes on with the agent once it runs again (SIGCONT)."""
    _, info = client.ensure()
    agent = int(info["pid"])
    window = Stdio(project, {"ORCH_AGENT_STALL_S": "1"})
    stopped = False
    try:
        init = {"processId": None, "rootUri": project.as_uri(), "capabilities": {}}
        window.send({"id": 1, "method": "initialize", "params": init})
        assert "capabilities" in window.answer(1, timeout=20)["result"]
        window.send({"method": "initialized", "params": {}})
        os.kill(agent, signal.SIGSTOP)
        stopped = True
        window.command(2, "orch.status")
        big = {"uri": (project / "orch.toml").as_uri(), "languageId": "toml", "version": 1}
        big["text"] = "# " + "x" * 8_000_000 + "\n"  # more than the socket buffers
        window.send({"method": "textDocument/didOpen", "params": {"textDocument": big}})
        began = time.monotonic()
        failed = window.answer(2, timeout=10)  # answered, not left hanging with the bridge
        assert "error" in failed and time.monotonic() - began < 8
        wait_for(lambda: any("took nothing for 1 s" in line for line in window.stderr))
        said = next(line for line in window.stderr if "took nothing" in line)
        assert f"the orch agent (pid {agent}) took nothing for 1 s: it is stopped" in said
        assert f"kill -CONT {agent}" in said
        os.kill(agent, signal.SIGCONT)
        stopped = False
        wait_for(lambda: any("reconnected" in line for line in window.stderr), 20)
        window.command(3, "orch.status")
        assert window.answer(3)["result"]["config"]["file"] is None
        assert window.proc.poll() is None and client.agent_pid(client.agent_paths(orch_home))
    finally:
        if stopped:
            os.kill(agent, signal.SIGCONT)
        stop_pid(window.proc.pid)


def test_a_windows_request_the_stopping_agent_did_not_run_goes_to_the_next_one(
    orch_home: Path, project: Path, silent: Silent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent stops (a newer client's `shutdown`) under a window with a command running
    (hung on the silent machine): it tells the bridge which requests it started; one sent
    meanwhile is not run there but in the next agent, and answered; the started one, cut
    off after the grace, is said to have maybe run."""
    monkeypatch.setenv("ORCH_AGENT_STOP_GRACE_S", str(GRACE_S))
    silent_machine(project, silent)
    paths, info = client.ensure()
    window = Stdio(project, {})
    try:
        init = {"processId": None, "rootUri": project.as_uri(), "capabilities": {}}
        window.send({"id": 1, "method": "initialize", "params": init})
        assert "capabilities" in window.answer(1, timeout=20)["result"]
        window.send({"method": "initialized", "params": {}})
        window.command(2, "orch.machine.select", {"machine": "box"})
        assert "result" in window.answer(2)
        window.command(3, "orch.jobs.status")  # hangs: box never speaks
        wait_for(lambda: len(silent.accepted) >= 1)  # (the window's status watch, this too)
        time.sleep(0.3)
        assert 3 not in window.answers, window.answers[3]
        assert client.call(paths, {"op": "shutdown", "forget": False})["shutdown"]
        with pytest.raises(client.AgentDown, match="stopping"):  # (it is stopping now)
            client.call(paths, {"op": "hello"})
        window.command(4, "orch.sync.status")  # reaches the stopping agent, which runs nothing
        moved = window.answer(4, timeout=15)
        assert moved.get("result", {}).get("machine") == "box", moved  # in the next agent
        assert client.hello(paths)["pid"] != info["pid"]
        cut = window.answer(3)
        assert (
            "the orch agent stopped while running workspace/executeCommand: it may have run"
            in (cut["error"]["message"])
        )
        assert window.proc.poll() is None
    finally:
        stop_pid(window.proc.pid)


def test_serve_detach_reports_on_stderr_and_keeps_stdout_clean(orch_home: Path) -> None:
    """A script that starts the agent (bench/cli.py) keeps its stdout for its own output."""
    started = subprocess.run(
        [sys.executable, "-m", "sidecar.agent", "serve", "--detach"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    pid = client.agent_pid(client.agent_paths(orch_home))
    try:
        assert started.returncode == 0 and started.stdout == ""
        assert started.stderr == f"ok pid {pid}\n"
    finally:
        if pid is not None:
            stop_pid(pid)


def test_a_cli_call_to_an_agent_stopped_meanwhile_ends_with_what_to_do(
    orch_home: Path, project: Path, silent: Silent
) -> None:
    """`orch run` sent, then the agent is stopped with SIGSTOP: the command does not wait
    for the run's 15-minute bound but ends after ORCH_AGENT_STALL_S, saying what happened;
    the next command says so at once instead of retrying."""
    silent_machine(project, silent)
    _, info = client.ensure()
    agent = int(info["pid"])
    env = {**os.environ, "PYTHONPATH": str(REPO), "ORCH_AGENT_STALL_S": "1"}
    argv = [sys.executable, "-m", "sidecar.cli.main", "run", "j", "--machine", "box", "--", "true"]
    run = subprocess.Popen(argv, cwd=project, env=env, stderr=subprocess.PIPE, text=True)
    stopped = False
    try:
        wait_for(lambda: len(silent.accepted) >= 1)  # the agent runs it: connecting to box
        os.kill(agent, signal.SIGSTOP)
        stopped = True
        began = time.monotonic()
        _, err = run.communicate(timeout=20)
        assert run.returncode != 0 and time.monotonic() - began < 10  # (not its 130 s bound)
        assert f"the orch agent (pid {agent}) has been stopped for 1 s" in err, err
        assert f"kill -CONT {agent}" in err and "it may run when it resumes" in err
        began = time.monotonic()
        again = run_orch(
            "rm", "j", "--machine", "box", cwd=project, env={"ORCH_AGENT_STALL_S": "1"}
        )
        assert again.returncode != 0 and time.monotonic() - began < 10
        assert f"the orch agent (pid {agent}) is stopped (SIGSTOP, Ctrl-Z)" in again.stderr
    finally:
        if stopped:
            os.kill(agent, signal.SIGCONT)
        if run.poll() is None:
            stop_pid(run.pid)
