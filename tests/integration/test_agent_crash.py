"""Crash safety of the local orch agent (issue 20, item 3), on the embedded local machine and
on a real OpenSSH sshd on 127.0.0.1 (the same tests, parametrized):

- kill -9 of the agent while a large transfer runs through a forward it owns: the client's
  connection ends with an error in bounded time (no hang), the port refuses new connections
  while the agent is dead, the next command brings the agent and the forward back on the same
  port, and a new transfer arrives whole;
- kill -9 of the agent with a sync and a forward over sshd: the next command restarts it, the
  sync resumes with a full reconcile (edits made meanwhile arrive) and the forward comes back
  (test_agent.py has the same test on the local machine).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import REPO, free_port, http_files, run_orch
from tests.integration.test_agent import _zombie, agent_state, wait_until
from tests.integration.test_sync import sync_project

pytestmark = pytest.mark.timeout(120)

BIG = 48 * 1024 * 1024  # large enough that socket buffers cannot hold it all at the kill
READ_TIMEOUT_S = 5.0


@dataclass
class Machine:
    kind: str
    project: Path
    remote: Path  # the project's folder on the machine (the sync's target)


@pytest.fixture(params=["local", "sshd"])
def machine(request: pytest.FixtureRequest, project: Path, orch_home: Path) -> Iterator[Machine]:
    (project / "a.txt").write_text("one\n")
    try:
        if request.param == "local":
            assert run_orch("up", cwd=project).returncode == 0
            remote = orch_home / "machines" / "local" / "home" / "work" / project.name
            try:
                yield Machine("local", project, remote)
            finally:
                run_orch("sync", "stop", cwd=project)
                run_orch("down", "--force", cwd=project)
        else:
            sshd = request.getfixturevalue("sshd")
            for p in sync_project(sshd, project, orch_home):  # stops the sync after
                yield Machine("sshd", project, p.remote)
    finally:
        subprocess.run(
            [sys.executable, "-m", "sidecar.agent", "stop"],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            timeout=30,
        )


@pytest.fixture
def big_file(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """An HTTP server with one large file; yields its port and the file's sha256."""
    with http_files(tmp_path / "www", {}) as port:
        data = os.urandom(1024 * 1024) * (BIG // (1024 * 1024))
        (tmp_path / "www" / "big.bin").write_bytes(data)
        yield port, hashlib.sha256(data).hexdigest()


def fetch(port: int) -> tuple[int, str]:
    """GET the whole file through the forward: its length and sha256."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
    try:
        conn.request("GET", "/big.bin")
        reply = conn.getresponse()
        digest, size = hashlib.sha256(), 0
        while chunk := reply.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
        return size, digest.hexdigest()
    finally:
        conn.close()


def kill_agent(home: Path) -> int:
    pid = int(agent_state(home)["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 5, "the agent to die")
    return pid


def test_kill_9_during_a_forwarded_transfer(
    machine: Machine, orch_home: Path, big_file: tuple[int, str]
) -> None:
    www, digest = big_file
    port = free_port()
    added = run_orch("ports", "add", f"{port}:{www}", cwd=machine.project)
    assert added.returncode == 0, added.stderr

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
    conn.request("GET", "/big.bin")
    reply = conn.getresponse()
    assert reply.status == 200 and reply.length == BIG
    received = len(reply.read(1 << 20))  # the transfer is under way
    old = kill_agent(orch_home)

    # The client's read ends with an error (reset, or the body cut short) in bounded time.
    began = time.monotonic()
    with pytest.raises((http.client.IncompleteRead, ConnectionError, TimeoutError)):
        while chunk := reply.read(1 << 20):
            received += len(chunk)
        raise http.client.IncompleteRead(b"", BIG - received)  # EOF before Content-Length
    assert time.monotonic() - began < READ_TIMEOUT_S + 3
    assert received < BIG
    conn.close()
    # While the agent is dead, nothing listens: a new connection is refused at once.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S).close()

    # The next command brings the agent back, and it brings the forward back on its port.
    listed = run_orch("ports", "list", "--json", cwd=machine.project, timeout=60)
    assert listed.returncode == 0, listed.stderr
    new = int(agent_state(orch_home)["pid"])
    assert new != old
    ports = json.loads(listed.stdout)["ports"]
    assert [(p["local_port"], p["owner_pid"]) for p in ports] == [(port, new)]
    wait_until(lambda: _accepts(port), 15, "the forward to listen again")
    assert fetch(port) == (BIG, digest)  # a new transfer arrives whole


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("machine", ["sshd"], indirect=True)
def test_kill_9_with_a_sync_and_a_forward_over_sshd(
    machine: Machine, orch_home: Path, big_file: tuple[int, str]
) -> None:
    www, _ = big_file
    project = machine.project
    started = run_orch("sync", "start", cwd=project, timeout=60)
    assert started.returncode == 0, started.stderr
    port = free_port()
    assert run_orch("ports", "add", f"{port}:{www}", cwd=project).returncode == 0
    for i in range(20):  # edits in flight when it dies
        (project / f"edit{i}.txt").write_text(f"{i}\n")
    old = kill_agent(orch_home)
    (project / "while-dead.txt").write_text("written while the agent was dead\n")
    (project / "a.txt").write_text("two\n")

    status = run_orch("status", "--json", cwd=project, timeout=60)
    assert status.returncode == 0, status.stderr
    new = int(agent_state(orch_home)["pid"])
    assert new != old

    def synced() -> bool:
        raw = json.loads(run_orch("sync", "status", "--json", cwd=project).stdout)
        return raw["state"] == "idle" and raw["owner_pid"] == new

    wait_until(synced, 30, "the sync to resume in the new agent")
    remote = machine.remote
    wait_until(lambda: (remote / "a.txt").exists() and (remote / "a.txt").read_text() == "two\n",
               15, "the reconcile to carry the edit made while the agent was dead")  # fmt: skip
    assert (remote / "while-dead.txt").read_text().startswith("written while")
    for i in range(20):
        assert (remote / f"edit{i}.txt").read_text() == f"{i}\n"
    listed = json.loads(run_orch("ports", "list", "--json", cwd=project).stdout)["ports"]
    assert [(p["local_port"], p["state"], p["owner_pid"]) for p in listed] == [
        (port, "active", new)
    ]
    wait_until(lambda: _accepts(port), 15, "the forward to listen again")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=READ_TIMEOUT_S)
    try:
        conn.request("HEAD", "/big.bin")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
