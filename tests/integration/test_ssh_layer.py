"""The SSH layer against a real OpenSSH sshd on 127.0.0.1 and the embedded local machine.

Real `ssh` through the managed config (ControlMaster created, then reused), port forwards to
an HTTP server on the remote side that come back after sshd is killed and restarted, host key
mismatches refused, busy local ports named, connection errors told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.app import Orchestrator
from sidecar.errors import AuthenticationFailed, ConnectTimeout, HostKeyMismatch, Unreachable
from sidecar.layout import Layout
from sidecar.machines.base import SSHTarget
from sidecar.ssh.pool import Backoff, ConnectionPool
from sidecar.state import is_locked, pid_alive
from tests.helpers import Sshd, free_port, http_files, run_orch, stop_pid, wait_port

pytestmark = pytest.mark.integration

HOSTILE = (
    b"# my config\r\nHost *\r\n  ControlMaster no\r\n  StrictHostKeyChecking no\r\n  Port 1\r\n"
)
WRONG_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEc4k5mK0f5uQj5C8a1m6yU9Zq4b1n0yVv6l0l3cF0Fh"


@pytest.fixture
def user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "user-ssh" / "config"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(HOSTILE)
    monkeypatch.setenv("ORCH_SSH_USER_CONFIG", str(path))
    return path


def _ssh(config: Path, alias: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-F", str(config), *args, alias]
        if args and args[0] == "-O"
        else ["ssh", "-F", str(config), *args[:-1], alias, "--", args[-1]],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def _check_master_reuse(user_config: Path, orch_home: Path, alias: str, who: str) -> None:
    first = _ssh(user_config, alias, 'echo "$USER"')
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == who
    sockets = list(Layout(orch_home).control_dir.iterdir())
    assert len(sockets) == 1 and sockets[0].is_socket()
    check = _ssh(user_config, alias, "-O", "check")
    assert "Master running" in check.stderr, check.stderr
    second = _ssh(user_config, alias, "-v", "true")
    assert second.returncode == 0
    assert "mux_client_request_session" in second.stderr  # ran through the existing master
    assert _ssh(user_config, alias, "-O", "check").stderr == check.stderr  # same master pid


def _stop_master(user_config: Path, alias: str) -> None:
    _ssh(user_config, alias, "-O", "exit")


def _use_sshd(project: Path, sshd: Sshd, host_key: str | None = None) -> str:
    toml = sshd.machine_toml()
    if host_key:
        toml = toml.replace(sshd.host_public_key, host_key)
    (project / "orch.toml").write_text('[project]\ndefault_machine = "box"\n' + toml)
    return f"orch-{project.name}-box"


def test_real_ssh_reuses_the_controlmaster_on_sshd(
    sshd: Sshd, project: Path, orch_home: Path, user_config: Path
) -> None:
    alias = _use_sshd(project, sshd)
    assert run_orch("up", cwd=project).returncode == 0
    wrote = run_orch("ssh-config", "write", "--json", cwd=project)
    assert wrote.returncode == 0, wrote.stderr
    result = json.loads(wrote.stdout)
    assert result["include"] == "top" and alias in result["hosts"]
    assert result["warnings"] == [], result["warnings"]  # the Host * block overrides nothing
    assert user_config.read_bytes().endswith(HOSTILE)
    try:
        _check_master_reuse(user_config, orch_home, alias, sshd.user)
    finally:
        _stop_master(user_config, alias)
    removed = run_orch("ssh-config", "remove", cwd=project)
    assert removed.returncode == 0
    assert user_config.read_bytes() == HOSTILE


def test_real_ssh_reuses_the_controlmaster_on_the_local_machine(
    project: Path, orch_home: Path, user_config: Path
) -> None:
    assert run_orch("up", cwd=project).returncode == 0
    try:
        assert run_orch("ssh-config", "write", cwd=project).returncode == 0
        import getpass

        try:
            _check_master_reuse(user_config, orch_home, "orch-local", getpass.getuser())
        finally:
            _stop_master(user_config, "orch-local")
    finally:
        run_orch("down", cwd=project)


def test_override_above_orchs_line_is_reported_with_its_line(
    project: Path, orch_home: Path, user_config: Path
) -> None:
    assert run_orch("up", cwd=project).returncode == 0
    try:
        assert run_orch("ssh-config", "write", cwd=project).returncode == 0
        # Another tool later puts its own lines above orch's Include.
        user_config.write_bytes(b"Host orch-*\n  ControlMaster no\n" + user_config.read_bytes())
        shown = run_orch("ssh-config", "show", cwd=project)
        assert "not the first line" in shown.stdout
        assert f"{user_config}:2: ControlMaster no overrides orch's controlmaster" in shown.stdout
    finally:
        run_orch("down", cwd=project)


# -- forwards -----------------------------------------------------------------------------------


def _get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read().decode()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_sshd(sshd: Sshd) -> None:
    """Kill sshd AND its per-connection processes (stopping the listener alone keeps them)."""
    assert sshd.proc is not None
    for pid in _descendants(sshd.proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    sshd.stop()


async def test_forward_reaches_remote_http_and_returns_after_sshd_restart(
    sshd: Sshd, project: Path, orch_home: Path
) -> None:
    alias = _use_sshd(project, sshd)
    orch = Orchestrator(cwd=project)
    orch.pool.backoff = Backoff(initial=0.1, maximum=1.0)
    states: list[str] = []
    orch.pool.add_listener(lambda a, state, err: states.append(state) if a == alias else None)
    remote_port, local_port = free_port(), free_port()
    await orch.up()
    target = await orch.ssh_target()
    started = await orch.pool.run(
        target,
        "cd ~ && echo served-by-remote > marker.txt && "
        f"(setsid python3 -m http.server {remote_port} --bind 127.0.0.1 "
        ">/dev/null 2>&1 </dev/null & echo $!)",
        check=True,
    )
    server_pid = int(started.stdout.strip())
    try:
        wait_port(remote_port)
        assert await orch.host_forward_owner() is True
        info = await orch.ports_add(local_port, remote_port)
        assert info.state == "active"
        assert await asyncio.to_thread(_get, local_port, "/marker.txt") == "served-by-remote\n"

        _kill_sshd(sshd)
        await asyncio.sleep(0.3)
        assert orch.pool.state(alias) == "reconnecting"
        listed = (await orch.ports_list()).ports
        assert [(p.local_port, p.state) for p in listed] == [(local_port, "reconnecting")]
        sshd.start()
        await orch.pool.wait_connected(alias, timeout=20)
        # Nobody re-added anything: the same local port works through the new connection.
        assert await asyncio.to_thread(_get, local_port, "/marker.txt") == "served-by-remote\n"
        assert (await orch.ports_list()).ports[0].state == "active"
        assert states[:3] == ["connected", "reconnecting", "reconnecting"] or (
            "reconnecting" in states and states[-1] == "connected"
        )
    finally:
        with contextlib.suppress(Exception):
            await orch.pool.run(target, f"kill {server_pid}")
        await orch.close()


def _listen_forever(port: int) -> subprocess.Popen[bytes]:
    code = (
        "import socket,time;s=socket.socket();"
        "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
        f"s.bind(('127.0.0.1',{port}));s.listen();time.sleep(300)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    wait_port(port)
    return proc


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[int]:
    with http_files(tmp_path / "www", {"hello.txt": "hello through orch\n"}) as port:
        yield port


def _ports(project: Path) -> list[dict]:
    result = run_orch("ports", "list", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["ports"]


def _wait_state(project: Path, port: int, state: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = [p for p in _ports(project) if p["local_port"] == port]
        if found and found[0]["state"] == state:
            return found[0]
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def test_cli_forwards_one_owner_busy_port_and_restart_of_the_local_machine(
    project: Path, orch_home: Path, http_server: int
) -> None:
    up = run_orch("up", "--json", cwd=project)
    assert up.returncode == 0, up.stderr
    port_a, port_b, busy = free_port(), free_port(), free_port()
    holder = _listen_forever(busy)
    owner = None
    try:
        # Two CLIs at once: one background owner, no duplicate.
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "sidecar.cli.main", "ports", "add", f"{p}:{http_server}"],
                cwd=project,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for p in (port_a, port_b)
        ]
        assert [p.wait(timeout=60) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
        listed = _ports(project)
        assert {p["local_port"] for p in listed} == {port_a, port_b}
        owners = {p["owner_pid"] for p in listed}
        assert len(owners) == 1 and all(p["state"] == "active" for p in listed)
        owner = owners.pop()
        assert _get(port_a, "/hello.txt") == "hello through orch\n"

        refused = run_orch("ports", "add", f"{busy}:{http_server}", cwd=project)
        assert refused.returncode == 6
        assert f"pid {holder.pid}" in refused.stderr and "python" in refused.stderr
        assert busy not in {p["local_port"] for p in _ports(project)}  # never moved elsewhere

        os.kill(json.loads(up.stdout)["pid"], signal.SIGKILL)  # the machine dies
        _wait_state(project, port_a, "reconnecting")
        assert run_orch("up", cwd=project).returncode == 0  # same port, kept in its state
        _wait_state(project, port_a, "active")
        assert _get(port_a, "/hello.txt") == "hello through orch\n"

        assert run_orch("ports", "remove", str(port_a), cwd=project).returncode == 0
        assert run_orch("ports", "remove", str(port_b), cwd=project).returncode == 0
        # The owner (the orch agent) lets go of the machine's forwards with its last one.
        lock = orch_home / "forwards" / "orch-local" / "owner.lock"
        deadline = time.monotonic() + 5
        while is_locked(lock) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_locked(lock)
        assert _ports(project) == []
        missing = run_orch("ports", "remove", str(port_a), cwd=project)
        assert missing.returncode == 4
    finally:
        stop_pid(holder.pid)
        holder.wait()
        if owner is not None and pid_alive(owner):
            stop_pid(owner)
        run_orch("down", cwd=project)


def test_killed_forwarder_is_restarted_by_list(
    project: Path, orch_home: Path, http_server: int
) -> None:
    assert run_orch("up", cwd=project).returncode == 0
    port = free_port()
    try:
        assert run_orch("ports", "add", f"{port}:{http_server}", cwd=project).returncode == 0
        owner = _ports(project)[0]["owner_pid"]
        os.kill(owner, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pid_alive(owner) and time.monotonic() < deadline:
            time.sleep(0.02)
        entry = _wait_state(project, port, "active")  # listing brought it back
        assert entry["owner_pid"] != owner and pid_alive(entry["owner_pid"])
        assert _get(port, "/hello.txt") == "hello through orch\n"
        status = json.loads(run_orch("status", "--json", cwd=project).stdout)
        assert [p["state"] for p in status["ports"]] == ["active"]
        # Removed on purpose, it stays removed: nothing to restart.
        assert run_orch("ports", "remove", str(port), cwd=project).returncode == 0
        assert _ports(project) == []
    finally:
        run_orch("down", cwd=project)


# -- host keys and errors -----------------------------------------------------------------------


async def test_changed_host_key_is_refused_by_ssh_pool_and_cli(
    sshd: Sshd, project: Path, orch_home: Path
) -> None:
    alias = _use_sshd(project, sshd, host_key=WRONG_KEY)
    orch = Orchestrator(cwd=project)
    try:
        await orch.write_ssh_config()
        managed = Layout(orch_home).ssh_config
        refused = _ssh(managed, alias, "true")
        assert refused.returncode == 255
        assert "Host key verification failed" in refused.stderr
        with pytest.raises(HostKeyMismatch) as caught:
            await orch.pool.run(await orch.ssh_target(), "true")
        assert "forget-key" in (caught.value.hint or "")
    finally:
        await orch.close()
    cli = run_orch("ports", "add", str(free_port()), cwd=project)
    assert cli.returncode == 5 and "host key" in cli.stderr and "forget-key" in cli.stderr


async def test_local_key_forgotten_then_repinned_by_up(project: Path, orch_home: Path) -> None:
    assert run_orch("up", cwd=project).returncode == 0
    known = orch_home / "ssh" / "known_hosts"
    try:
        good = known.read_text()
        known.write_text(f"orch-local {WRONG_KEY}\n")
        orch = Orchestrator(cwd=project)
        try:
            with pytest.raises(HostKeyMismatch):
                await orch.pool.run(await orch.ssh_target(), "true")
        finally:
            await orch.close()
        forgot = run_orch("machine", "forget-key", "local", cwd=project)
        assert forgot.returncode == 0, forgot.stderr
        assert "orch-local" not in known.read_text()
        assert run_orch("up", cwd=project).returncode == 0
        assert known.read_text() == good
    finally:
        run_orch("down", cwd=project)


async def test_connection_errors_are_told_apart(sshd: Sshd, orch_home: Path) -> None:
    layout = Layout(orch_home)
    pool = ConnectionPool(connect_timeout=0.5)
    base = {
        "alias": "t",
        "host": "127.0.0.1",
        "user": sshd.user,
        "host_key_alias": "t",
        "known_hosts_file": str(layout.known_hosts),
    }
    layout.ensure()
    layout.known_hosts.write_text(f"t {sshd.host_public_key}\n")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # completes the TCP handshake, never speaks SSH
    try:
        wrong_key = orch_home / "wrong_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong_key)], check=True
        )
        cases = [
            (AuthenticationFailed, sshd.port, str(wrong_key)),
            (Unreachable, free_port(), str(sshd.client_key)),
            (ConnectTimeout, silent.getsockname()[1], str(sshd.client_key)),
        ]
        for error, port, key in cases:
            target = SSHTarget(**base, port=port, identity_file=key)
            with pytest.raises(error):
                await pool.run(target, "true")
        ok = SSHTarget(**base, port=sshd.port, identity_file=str(sshd.client_key))
        assert (await pool.run(ok, "echo ok")).stdout == "ok\n"
    finally:
        silent.close()
        await pool.close()
