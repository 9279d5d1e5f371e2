"""Issue 13's edges against real files, the real `orch` command, the embedded local machine
and a real OpenSSH sshd: bad ports, `[[ports]]` on the local machine, a user ssh config
that is a folder, hard-linked or read-only, concurrent write/remove, writers killed with
SIGKILL, quotes in $ORCH_HOME, a host-key mismatch through `orch ssh`, and reverse forwards
that carry a job's request back to this computer and return after the connection drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remote_config.ssh_user_config import include_line
from sidecar.app import Orchestrator
from sidecar.layout import Layout
from sidecar.ssh import config_service
from sidecar.ssh.pool import Backoff
from tests.helpers import REPO, Sshd, free_port, http_files, run_orch, stop_pid

pytestmark = pytest.mark.integration

WRONG_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEc4k5mK0f5uQj5C8a1m6yU9Zq4b1n0yVv6l0l3cF0Fh"


@pytest.fixture
def user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "user-ssh" / "config"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"Host *\n  ServerAliveInterval 5\n")
    monkeypatch.setenv("ORCH_SSH_USER_CONFIG", str(path))
    return path


@pytest.fixture
def laptop_server(tmp_path: Path) -> Iterator[int]:
    """An HTTP server on this computer (the laptop side of a reverse forward)."""
    with http_files(tmp_path / "laptop", {"voice.txt": "answered by the laptop\n"}) as port:
        yield port


def _fetch_on_machine(port: int) -> str:
    """A command for the machine: GET /voice.txt from its own 127.0.0.1:port."""
    code = (
        "import urllib.request as u;"
        f"print(u.urlopen('http://127.0.0.1:{port}/voice.txt', timeout=10).read().decode(), end='')"
    )
    return f"python3 -c {json.dumps(code)}"


# -- ports: one grammar, one exit code -----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["0"],
        ["65536"],
        ["70000"],
        ["-1"],
        ["+80"],
        ["08080"],
        ["a:0"],
        ["18555:70000"],
        ["18556:0"],
        ["--reverse", "1:h:2"],
        ["--reverse", "0"],
    ],
)
def test_bad_ports_are_usage_errors(args: list[str], project: Path, orch_home: Path) -> None:
    result = run_orch("ports", "add", *args, cwd=project)
    assert result.returncode == 2, result.stderr
    assert "port" in result.stderr and "internal error" not in result.stderr
    assert not (orch_home / "forwards").exists()  # nothing was started


@pytest.mark.parametrize("port", ["0", "-1", "+80", "65536", "x"])
def test_bad_port_to_remove_is_a_usage_error(port: str, project: Path, orch_home: Path) -> None:
    result = run_orch("ports", "remove", "--", port, cwd=project)
    assert result.returncode == 2 and "port" in result.stderr, result.stderr


# -- the local machine: same computer, same port numbers -----------------------------------------


def test_local_machine_leaves_same_port_forwards_to_the_job(project: Path, orch_home: Path) -> None:
    job_port, mapped, target = free_port(), free_port(), free_port()
    (project / "orch.toml").write_text(
        f"[[ports]]\nlocal = {job_port}\n\n[[ports]]\nlocal = {mapped}\nremote = {target}\n"
    )
    assert run_orch("up", cwd=project).returncode == 0
    try:
        added = run_orch("ports", "add", "--json", cwd=project)
        assert added.returncode == 0, added.stderr
        by_port = {p["local_port"]: p for p in json.loads(added.stdout)["ports"]}
        assert by_port[job_port]["state"] == "direct"
        assert "reachable as it is" in by_port[job_port]["detail"]
        assert by_port[mapped]["state"] == "active"  # a different port is still forwarded
        # A job on the machine can serve on the port: orch did not take it.
        serve = (
            f"python3 -c \"import socket;s=socket.socket();s.bind(('127.0.0.1',{job_port}));"
            "s.listen();print('bound')\""
        )
        ran = run_orch("ssh", "--", serve, cwd=project)
        assert ran.returncode == 0 and ran.stdout.strip() == "bound", ran.stderr
        one = run_orch("ports", "add", str(job_port), cwd=project)
        assert one.returncode == 0 and "not forwarded" in one.stdout
        managed = Layout(orch_home).ssh_config.read_text()
        assert f"LocalForward 127.0.0.1:{job_port} " not in managed
        assert f"LocalForward 127.0.0.1:{mapped} 127.0.0.1:{target}" in managed
    finally:
        run_orch("down", cwd=project)


# -- ~/.ssh/config edges ---------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["write", "remove", "show"])
def test_user_config_that_is_a_folder_is_refused(
    verb: str, tmp_path: Path, project: Path, orch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "dot-ssh" / "config"
    folder.mkdir(parents=True)
    monkeypatch.setenv("ORCH_SSH_USER_CONFIG", str(folder))
    result = run_orch("ssh-config", verb, cwd=project)
    assert result.returncode == 1, result.stderr
    assert "is a folder" in result.stderr and "internal error" not in result.stderr
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_concurrent_writes_and_removes_never_leave_a_dangling_include(
    orch_home: Path, user_config: Path
) -> None:
    layout = Layout(orch_home)
    line = include_line(str(layout.ssh_config))
    errors: list[BaseException] = []

    def worker(verb: str) -> None:
        try:
            if verb == "write":
                config_service.write(layout, [], [])
            else:
                config_service.remove(layout)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for _round in range(5):
        verbs = ["write"] * 10 + ["remove"] * 10
        random.shuffle(verbs)
        threads = [threading.Thread(target=worker, args=(v,)) for v in verbs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        included = line in user_config.read_bytes()
        assert included == layout.ssh_config.exists(), "Include and managed file disagree"


def test_writers_killed_mid_write_leave_no_temp_files(
    project: Path, orch_home: Path, user_config: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for i in range(16):
        # Alternate so that every run really rewrites the file.
        verb = "write" if i % 2 == 0 else "remove"
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli.main", "ssh-config", verb],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(random.uniform(0.15, 0.45))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # A leftover exactly like the one a kill between mkstemp and rename leaves.
    (user_config.parent / ".config.orch-abcd1234").write_bytes(user_config.read_bytes())
    assert run_orch("ssh-config", "write", cwd=project).returncode == 0
    left = [p.name for p in user_config.parent.iterdir() if p.name != "config"]
    assert left == [], left
    assert include_line(str(Layout(orch_home).ssh_config)) in user_config.read_bytes()


def test_remove_when_nothing_exists_creates_nothing(
    tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, dot_ssh = tmp_path / "fresh-home", tmp_path / "dot-ssh"
    dot_ssh.mkdir()
    monkeypatch.setenv("ORCH_HOME", str(home))
    monkeypatch.setenv("ORCH_SSH_USER_CONFIG", str(dot_ssh / "config"))
    result = run_orch("ssh-config", "remove", cwd=project)
    assert result.returncode == 0, result.stderr
    assert not home.exists() and list(dot_ssh.iterdir()) == []


def test_hard_linked_config_keeps_its_link(
    project: Path, orch_home: Path, user_config: Path
) -> None:
    other = user_config.parent.parent / "dotfiles-ssh-config"
    os.link(user_config, other)
    result = run_orch("ssh-config", "write", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "hard links" in result.stdout
    assert os.stat(other).st_ino == os.stat(user_config).st_ino
    assert other.read_bytes() == user_config.read_bytes()
    assert user_config.read_bytes().startswith(b"Include ")
    assert run_orch("ssh-config", "remove", cwd=project).returncode == 0
    assert other.read_bytes() == b"Host *\n  ServerAliveInterval 5\n"


def test_read_only_config_is_refused_with_exit_1(
    project: Path, orch_home: Path, user_config: Path
) -> None:
    user_config.chmod(0o400)
    before = user_config.read_bytes()
    result = run_orch("ssh-config", "write", cwd=project)
    assert result.returncode == 1, result.stderr
    assert "read-only" in result.stderr and "changed nothing" in result.stderr
    assert user_config.read_bytes() == before


@pytest.mark.parametrize("name", ["it's home", 'say "hi"'])
def test_quotes_in_orch_home_work_end_to_end(
    name: str, tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / name
    monkeypatch.setenv("ORCH_HOME", str(home))
    up = run_orch("up", cwd=project)
    try:
        assert up.returncode == 0, up.stderr
        ran = run_orch("ssh", "--", "echo", "through-openssh", cwd=project)
        assert ran.returncode == 0 and ran.stdout.strip() == "through-openssh", ran.stderr
    finally:
        run_orch("down", cwd=project)
        from tests.conftest import _stop_orch_processes

        _stop_orch_processes(home)


def test_orch_home_openssh_cannot_name_is_refused(
    tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "100%"))
    result = run_orch("up", cwd=project)
    assert result.returncode == 2 and "ORCH_HOME" in result.stderr, result.stderr
    assert not (tmp_path / "100%").exists()


def test_host_key_mismatch_through_orch_ssh_exits_5(project: Path, orch_home: Path) -> None:
    assert run_orch("up", cwd=project).returncode == 0
    known = orch_home / "ssh" / "known_hosts"
    try:
        ok = run_orch("ssh", "--", "exit", "255", cwd=project)
        assert ok.returncode == 255  # the remote command's own status passes through
        _stop_master(orch_home)  # a live master would skip the host-key check
        known.write_text(f"orch-local {WRONG_KEY}\n")
        refused = run_orch("ssh", "--", "true", cwd=project)
        assert refused.returncode == 5, refused.stderr
        assert "host key" in refused.stderr and "forget-key" in refused.stderr
    finally:
        _stop_master(orch_home)
        run_orch("down", cwd=project)


def _stop_master(orch_home: Path) -> None:
    managed = Layout(orch_home).ssh_config
    subprocess.run(
        ["ssh", "-F", str(managed), "-O", "exit", "orch-local"], capture_output=True, timeout=10
    )


def test_orch_toml_that_is_a_folder_is_refused(project: Path, orch_home: Path) -> None:
    (project / "orch.toml").mkdir()
    result = run_orch("status", cwd=project)
    assert result.returncode == 3 and "is a folder" in result.stderr, result.stderr


# -- reverse forwards ------------------------------------------------------------------------------


def test_reverse_forward_on_the_local_machine_survives_a_restart(
    project: Path, orch_home: Path, laptop_server: int
) -> None:
    remote = free_port()
    (project / "orch.toml").write_text(
        f"[[ports]]\nlocal = {laptop_server}\nremote = {remote}\nreverse = true\n"
    )
    up = run_orch("up", "--json", cwd=project)
    assert up.returncode == 0, up.stderr
    try:
        added = run_orch("ports", "add", cwd=project)
        assert added.returncode == 0, added.stderr
        assert "<-" in added.stdout and "active" in added.stdout
        assert f"RemoteForward 127.0.0.1:{remote} 127.0.0.1:{laptop_server}" in (
            Layout(orch_home).ssh_config.read_text()
        )
        job = run_orch("run", "--no-snapshot", "voice", _fetch_on_machine(remote), cwd=project)
        assert job.returncode == 0, job.stderr
        _wait_job_output(project, "voice", "answered by the laptop")

        os.kill(json.loads(up.stdout)["pid"], signal.SIGKILL)  # the machine's server dies
        time.sleep(0.3)
        assert run_orch("up", cwd=project).returncode == 0
        deadline = time.monotonic() + 30
        while True:  # the forwarder reconnects and asks the machine to listen again
            again = run_orch("ssh", "--", _fetch_on_machine(remote), cwd=project)
            if again.returncode == 0:
                break
            assert time.monotonic() < deadline, again.stderr
            time.sleep(0.2)
        assert again.stdout == "answered by the laptop\n"
        listed = json.loads(run_orch("ports", "list", "--json", cwd=project).stdout)["ports"]
        assert [(p["reverse"], p["state"]) for p in listed] == [(True, "active")]
        removed = run_orch("ports", "remove", "--reverse", str(remote), cwd=project)
        assert removed.returncode == 0, removed.stderr
    finally:
        run_orch("down", cwd=project)


def _wait_job_output(project: Path, name: str, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        logs = run_orch("logs", name, cwd=project)
        if text in logs.stdout:
            return
        assert time.monotonic() < deadline, (logs.stdout, logs.stderr)
        time.sleep(0.2)


def _kill_sshd(sshd: Sshd) -> None:
    from tests.integration.test_ssh_layer import _kill_sshd as kill

    kill(sshd)


async def test_reverse_forward_through_real_sshd_comes_back_after_a_drop(
    sshd: Sshd, project: Path, orch_home: Path, laptop_server: int
) -> None:
    (project / "orch.toml").write_text('[project]\ndefault_machine = "box"\n' + sshd.machine_toml())
    orch = Orchestrator(cwd=project)
    orch.pool.backoff = Backoff(initial=0.1, maximum=1.0)
    remote = free_port()
    await orch.up()
    target = await orch.ssh_target()
    try:
        assert await orch.host_forward_owner() is True
        info = await orch.ports_add(laptop_server, remote, reverse=True)
        assert (info.state, info.reverse) == ("active", True)
        got = await orch.pool.run(target, _fetch_on_machine(remote), check=True)
        assert got.stdout == "answered by the laptop\n"

        _kill_sshd(sshd)
        await asyncio.sleep(0.3)
        sshd.start()
        await orch.pool.wait_connected(target.alias, timeout=20)
        deadline = time.monotonic() + 20
        while True:  # the listener is requested again on the new connection
            again = await orch.pool.run(target, _fetch_on_machine(remote))
            if again.exit_status == 0:
                break
            assert time.monotonic() < deadline, again.stderr
            await asyncio.sleep(0.2)
        assert again.stdout == "answered by the laptop\n"
        listed = (await orch.ports_list()).ports
        assert [(p.reverse, p.state) for p in listed] == [(True, "active")]
    finally:
        with contextlib.suppress(Exception):
            await orch.ports_remove(remote, reverse=True)
        await orch.close()


def test_killed_forwarder_whose_port_was_taken_says_why(
    project: Path, orch_home: Path, laptop_server: int
) -> None:
    from sidecar.state import pid_alive
    from tests.integration.test_ssh_layer import _listen_forever

    assert run_orch("up", cwd=project).returncode == 0
    port, holder = free_port(), None
    try:
        assert run_orch("ports", "add", f"{port}:{laptop_server}", cwd=project).returncode == 0
        listed = json.loads(run_orch("ports", "list", "--json", cwd=project).stdout)["ports"]
        owner = listed[0]["owner_pid"]
        os.kill(owner, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pid_alive(owner) and time.monotonic() < deadline:
            time.sleep(0.02)
        holder = _listen_forever(port)  # someone takes the port before the restart
        result = run_orch("ports", "list", "--json", cwd=project)
        assert result.returncode == 0, result.stderr
        entry = json.loads(result.stdout)["ports"]
        assert [(p["local_port"], p["state"]) for p in entry] == [(port, "dead")]
        assert "could not be restarted" in entry[0]["detail"]
        assert f"pid {holder.pid}" in entry[0]["detail"]
    finally:
        if holder is not None:
            stop_pid(holder.pid)
            holder.wait()
        run_orch("down", cwd=project)


# -- keepalives and compression, per machine -------------------------------------------------------


@pytest.mark.parametrize("compression", [True, False])
async def test_keepalive_and_compression_reach_openssh_and_the_pool(
    compression: bool, project: Path, orch_home: Path
) -> None:
    flag = "true" if compression else "false"
    (project / "orch.toml").write_text(
        "[machines.local]\nserver_alive_interval = 60\nserver_alive_count_max = 10\n"
        f"compression = {flag}\n"
    )
    orch = Orchestrator(cwd=project)
    await orch.up()
    try:
        shown = subprocess.run(
            ["ssh", "-G", "-F", str(Layout(orch_home).ssh_config), "orch-local"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        want = "yes" if compression else "no"
        assert {"serveraliveinterval 60", "serveralivecountmax 10", f"compression {want}"} <= set(
            shown
        )
        target = await orch.ssh_target()
        assert (await orch.pool.run(target, "echo ok")).stdout == "ok\n"
        conn = await orch.pool.connection(target)
        expected = "zlib@openssh.com" if compression else "none"
        assert conn.get_extra_info("send_compression") == expected
        assert conn.get_extra_info("recv_compression") == expected
        ran = run_orch("ssh", "--", "echo", "via-openssh", cwd=project)  # OpenSSH agrees too
        assert ran.returncode == 0 and ran.stdout.strip() == "via-openssh", ran.stderr
    finally:
        await orch.close()
        _stop_master(orch_home)
        await orch.down()
