"""A machine reached ONLY through a ProxyCommand (a bastion, SSM, `gh codespace ssh --stdio`):
the managed ssh entry (OpenSSH: `orch ssh`, rsync), the asyncssh pool (jobs, status) and the
port forwarder all go through the command, against a real sshd on 127.0.0.1 whose configured
host name does not resolve — so nothing can have connected directly."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from remote_config import job_scripts as js
from sidecar.app import Orchestrator
from tests.helpers import Sshd, free_port, run_orch

pytestmark = pytest.mark.integration


@pytest.fixture
def proxied(sshd: Sshd, project: Path, orch_home: Path) -> Iterator[Path]:
    """The project configured for the proxied machine; yields the proxy's use log."""
    log = orch_home / "proxy.log"
    toml = '[project]\ndefault_machine = "box"\n' + sshd.machine_toml(proxy_log=log)
    (project / "orch.toml").write_text(toml)
    (project / "hello.txt").write_text("through the proxy\n")
    yield log


def _uses(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"echo:" + conn.recv(100))

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


async def test_ssh_sync_job_and_forward_through_a_proxy_command(
    proxied: Path, project: Path, sshd: Sshd
) -> None:
    # OpenSSH through the managed entry's ProxyCommand.
    up = run_orch("up", cwd=project)
    assert up.returncode == 0, up.stderr
    out = run_orch("ssh", "--", "echo", "hello-from", "$USER", cwd=project)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"hello-from {sshd.user}"
    assert _uses(proxied) >= 1

    # rsync (through ControlMaster, through the proxy), then a job from the synced snapshot.
    before = _uses(proxied)
    synced = run_orch("sync", "now", cwd=project)
    assert synced.returncode == 0, synced.stderr
    assert (sshd.home / "work" / project.name / "hello.txt").read_text() == "through the proxy\n"

    orch = Orchestrator(cwd=project)
    server, remote_port = _echo_server()
    try:
        job = await orch.jobs_run("cat", ["cat", "hello.txt"])
        assert job.backend == "tmux"
        for _ in range(100):
            if {j.name: j for j in await orch.jobs_status()}["cat"].state != "running":
                break
            await asyncio.sleep(0.05)
        assert await orch.jobs_logs("cat") == "through the proxy\n"
        assert _uses(proxied) > before  # the pool's connection came through the proxy too

        # A port forward, owned by the forwarder process, through the proxy as well.
        local = free_port()
        fwd = await orch.ports_add(local, remote_port)
        assert fwd.state == "active"
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        writer.write(b"ping")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(100), 10) == b"echo:ping"
        writer.close()
        await orch.ports_remove(local)
    finally:
        server.close()
        target = await orch.ssh_target()
        await orch.pool.run(target, "sh -s", input=js.reset_script(), timeout=30)
        await orch.close()


def test_managed_entry_carries_the_proxy_command(proxied: Path, project: Path) -> None:
    from sidecar.layout import Layout

    up = run_orch("up", cwd=project)  # writes the machine's entry into orch's managed config
    assert up.returncode == 0, up.stderr
    config = Layout.from_env().ssh_config.read_text()
    assert "HostName box.orch-proxied.invalid" in config
    assert "ProxyCommand " in config and "stdio_proxy.py 127.0.0.1" in config
    assert "StrictHostKeyChecking yes" in config
