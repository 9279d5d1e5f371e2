"""The local orch agent against the embedded local machine (a real asyncssh server on loopback).

Two clients (the `orch` command, and the facade the language server calls) share one agent
and one SSH connection to the machine; a SIGKILLed agent is brought back by the next command
with its sync (full reconcile) and forwards; an older agent is replaced by a newer client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, free_port, http_files, run_orch, stop_pid

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def www(tmp_path: Path) -> Iterator[int]:
    with http_files(tmp_path / "www", {"hello.txt": "hello through the agent\n"}) as port:
        yield port


def wait_until(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def agent_state(home: Path) -> dict:
    return json.loads((home / "agent" / "state.json").read_text())


def agent_info(home: Path) -> dict:
    from sidecar import agent_client as client

    return client.call(client.agent_paths(home), {"op": "info"})


def machine_port(home: Path) -> int:
    return int(json.loads((home / "machines" / "local" / "state.json").read_text())["port"])


def established_to(pid: int, port: int) -> int:
    """How many TCP connections process `pid` has open to 127.0.0.1:`port`."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello.txt", timeout=5) as reply:
        return reply.read().decode()


def remote_file(home: Path, project: Path, name: str) -> Path:
    return home / "machines" / "local" / "home" / "work" / project.name / name


def orch_processes(home: Path) -> list[str]:
    """The command lines of every orch background process of this $ORCH_HOME."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"ORCH_HOME={home}".encode() in env and "sidecar" in cmd:
            found.append(cmd)
    return found


@pytest.fixture
def up(project: Path, orch_home: Path) -> Iterator[Path]:
    (project / "a.txt").write_text("one\n")
    assert run_orch("up", cwd=project).returncode == 0
    try:
        yield project
    finally:
        run_orch("sync", "stop", cwd=project)
        run_orch("down", "--force", cwd=project)
        subprocess.run(
            [sys.executable, "-m", "sidecar.agent", "stop"],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
        )


async def test_cli_and_facade_share_one_agent_and_one_connection(
    up: Path, orch_home: Path, www: int
) -> None:
    from sidecar.app import Orchestrator

    started = run_orch("sync", "start", cwd=up)  # client 1: the orch command
    assert started.returncode == 0, started.stderr
    pid = agent_state(orch_home)["pid"]
    sidecar = Orchestrator(cwd=up)  # client 2: the facade the language server calls
    try:
        port = free_port()
        await sidecar.ports_add(port, www)
        assert get(port) == "hello through the agent\n"
        ports = (await sidecar.ports_list()).ports
        assert [(p.local_port, p.owner_pid) for p in ports] == [(port, pid)]
    finally:
        await sidecar.close()
    second = free_port()
    assert run_orch("ports", "add", f"{second}:{www}", cwd=up).returncode == 0
    assert get(second) == "hello through the agent\n"
    sync = json.loads(run_orch("sync", "status", "--json", cwd=up).stdout)
    assert sync["owner_pid"] == pid and sync["state"] == "idle"

    info = agent_info(orch_home)
    assert info["pid"] == pid and info["connections"] == {"orch-local": "connected"}
    assert len(info["syncs"]) == 1 and len(info["forwards"]["orch-local"]) == 2
    # One SSH connection to the machine carries the sync's helper and both forwards.
    assert established_to(pid, machine_port(orch_home)) == 1
    kinds = " ".join(orch_processes(orch_home))
    assert "sidecar.sync.daemon" not in kinds and "sidecar.ssh.forwarder" not in kinds

    # `orch status` is answered by the agent, with what the ordinary path says.
    thin = run_orch("status", "--json", cwd=up)
    plain = run_orch("status", "--json", cwd=up, env={"ORCH_NO_AGENT": "1"})
    assert thin.returncode == plain.returncode == 0, thin.stderr + plain.stderr
    a, b = json.loads(thin.stdout), json.loads(plain.stdout)
    assert a["machine"]["state"] == b["machine"]["state"] == "running"
    assert sorted(p["local_port"] for p in a["ports"]) == sorted(
        p["local_port"] for p in b["ports"]
    )
    assert a["sync"]["owner_pid"] == b["sync"]["owner_pid"] == pid
    text = run_orch("status", cwd=up)
    assert text.returncode == 0 and "local" in text.stdout and "running" in text.stdout


def test_kill_9_of_the_agent_loses_nothing(up: Path, orch_home: Path, www: int) -> None:
    assert run_orch("sync", "start", cwd=up).returncode == 0
    port = free_port()
    assert run_orch("ports", "add", f"{port}:{www}", cwd=up).returncode == 0
    pid = agent_state(orch_home)["pid"]
    for i in range(20):  # edits in flight when it dies
        (up / f"edit{i}.txt").write_text(f"{i}\n")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 5, "the agent to die")
    (up / "while-dead.txt").write_text("written while the agent was dead\n")
    (up / "a.txt").write_text("two\n")

    # The next command (any that needs state) brings the agent back, which resumes both.
    status = run_orch("status", "--json", cwd=up)
    assert status.returncode == 0, status.stderr
    new_pid = agent_state(orch_home)["pid"]
    assert new_pid != pid

    def synced() -> bool:
        raw = json.loads(run_orch("sync", "status", "--json", cwd=up).stdout)
        return raw["state"] == "idle" and raw["owner_pid"] == new_pid

    wait_until(synced, 30, "the sync to resume in the new agent")
    assert remote_file(orch_home, up, "while-dead.txt").read_text().startswith("written while")
    assert remote_file(orch_home, up, "a.txt").read_text() == "two\n"
    for i in range(20):
        assert remote_file(orch_home, up, f"edit{i}.txt").read_text() == f"{i}\n"
    assert get(port) == "hello through the agent\n"  # the forward came back on its port
    listed = json.loads(run_orch("ports", "list", "--json", cwd=up).stdout)["ports"]
    assert [(p["local_port"], p["state"], p["owner_pid"]) for p in listed] == [
        (port, "active", new_pid)
    ]


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_an_older_agent_is_replaced_by_a_newer_client(up: Path, orch_home: Path) -> None:
    from sidecar import agent_client as client

    subprocess.run(  # `orch up` ran in the agent of this version: an old one takes its place
        [sys.executable, "-m", "sidecar.agent", "stop"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        check=True,
    )
    wait_until(lambda: not client.alive(client.agent_paths(orch_home)), 10, "the agent to stop")
    old = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sidecar; sidecar.__version__ = '0.0.1'\n"
            "from sidecar.agent.__main__ import main; main(['serve', '--detach'])",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert old.stderr.startswith("ok pid"), old.stdout + old.stderr
    assert old.stdout == ""  # (its report is on stderr: a script's stdout stays its own)
    paths = client.agent_paths(orch_home)
    assert client.hello(paths)["version"] == "0.0.1"
    old_pid = agent_state(orch_home)["pid"]
    # The old agent runs a sync (asked directly: a current client would replace it first).
    reply = client.call(
        paths, {"op": "sync.start", "project": str(up), "machine": "local"}, timeout=60
    )
    assert reply["ok"], reply
    try:
        status = run_orch("status", "--json", cwd=up)  # a newer client
        assert status.returncode == 0, status.stderr
        new = client.hello(paths)
        assert new["version"] != "0.0.1" and new["pid"] != old_pid
        assert not Path(f"/proc/{old_pid}").exists() or _zombie(old_pid)

        def resumed() -> bool:
            raw = json.loads(run_orch("sync", "status", "--json", cwd=up).stdout)
            return raw["state"] == "idle" and raw["owner_pid"] == new["pid"]

        wait_until(resumed, 30, "the sync to move to the new agent")
    finally:
        if Path(f"/proc/{old_pid}").exists():
            stop_pid(old_pid)
