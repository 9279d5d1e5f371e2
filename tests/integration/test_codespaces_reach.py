"""A codespace reached for real: the API stand-in creates it, a stand-in `gh` on PATH carries
sshd over stdin/stdout to the test sshd on 127.0.0.1, and orch's managed ProxyCommand
entry carries `orch ssh` (OpenSSH), the asyncssh pool, sync, a job and a port forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remote_config import job_scripts as js
from sidecar.app import Orchestrator
from sidecar.errors import HostKeyMismatch
from sidecar.machines.codespaces import CodespacesProvider
from tests.helpers import Sshd, free_port

pytestmark = pytest.mark.integration

GH_DIR = Path(__file__).resolve().parents[1] / "codespaces_api" / "bin"


@pytest.fixture
def fake_gh(
    sshd: Sshd, github_api: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Path]:
    """The stand-in gh on PATH, pointing at the test sshd; the API's next codespace is it."""
    keys = sshd.folder / "authorized_keys"
    before = keys.read_text()
    log = tmp_path / "gh.log"
    monkeypatch.setenv("PATH", f"{GH_DIR}:{__import__('os').environ['PATH']}")
    for key, value in {
        "FAKE_GH_SSHD_PORT": str(sshd.port),
        "FAKE_GH_SSHD_FOLDER": str(sshd.folder),
        "FAKE_GH_AUTHORIZED_KEYS": str(keys),
        "FAKE_GH_KEY": str(sshd.client_key),
        "FAKE_GH_HOST_KEY": sshd.host_public_key,
        "FAKE_GH_USER": sshd.user,
        "FAKE_GH_CODESPACE": "proj-1000-x9q",  # the stand-in API's first name
        "FAKE_GH_LOG": str(log),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(CodespacesProvider, "poll_interval_s", 0.0)
    try:
        yield log
    finally:
        keys.write_text(before)
        # The "codespace" is the shared test user: stop the idle agent `up` started there and
        # remove the jobs these tests ran, so later tests see only their own.
        subprocess.run(
            sshd.ssh_argv(
                'kill "$(cat ~/.orch/idle/agent.pid 2>/dev/null)" 2>/dev/null; rm -rf ~/.orch/idle; '
                + js.reset_script().replace("\n", "\n")
            ),
            capture_output=True,
            timeout=60,
        )


def _toml(project: Path, extra: str = "") -> None:
    (project / "orch.toml").write_text(
        '[project]\nname = "proj"\ndefault_machine = "cs"\n'
        '[machines.cs]\nkind = "codespaces"\nrepository = "octo/proj"\n' + extra
    )


async def test_up_pins_through_gh_and_ssh_runs_through_the_proxy(
    fake_gh: Path, project: Path, orch_home: Path, sshd: Sshd
) -> None:
    _toml(project)
    orch = Orchestrator(cwd=project)
    try:
        info = await orch.up()
        assert info.state == "running" and info.address == "proj-1000-x9q"
        # The key was learnt through gh's channel, not from the network.
        assert "codespace ssh -c proj-1000-x9q -- id -un && cat" in fake_gh.read_text()
        pinned = (orch_home / "ssh" / "known_hosts").read_text()
        assert sshd.host_public_key.split()[1] in pinned
        config = (orch_home / "ssh" / "config").read_text()
        assert "ProxyCommand" in config and "--stdio -- -i" in config
        assert "StrictHostKeyChecking yes" in config

        # OpenSSH through the managed entry (what `orch ssh` and VS Code Remote-SSH run).
        argv = await orch.ssh_argv(None, ["echo", "via-openssh", "$USER"])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["via-openssh", sshd.user]

        # asyncssh's pool through the same ProxyCommand.
        target = await orch.ssh_target()
        result = await orch.pool.run(target, "echo pooled")
        assert result.stdout.strip() == "pooled"
    finally:
        await orch.close()
        with contextlib.suppress(Exception):
            subprocess.run(["ssh", "-F", str(orch_home / "ssh" / "config"), "-O", "exit",
                            "orch-proj-cs"], capture_output=True, timeout=10)  # fmt: skip


async def test_sync_job_and_port_forward_through_the_proxy(
    fake_gh: Path, project: Path, orch_home: Path, sshd: Sshd
) -> None:
    _toml(project)
    (project / "hello.txt").write_text("from the laptop\n")
    orch = Orchestrator(cwd=project)
    try:
        await orch.up()
        await orch.sync_now()
        job = await orch.jobs_run("readback", "cat hello.txt", snapshot=False)
        for _ in range(100):
            if (await orch.jobs(None).info(job.name)).state != "running":
                break
            await asyncio.sleep(0.1)
        assert "from the laptop" in await orch.jobs_logs("readback")

        # A port forward to a web server started on the codespace as an orch job.
        remote_port, local_port = free_port(), free_port()
        await orch.jobs_run(
            "web", f"python3 -m http.server {remote_port} --bind 127.0.0.1", snapshot=False
        )
        try:
            await orch.ports_add(local_port, remote_port)
            body = b""
            for _ in range(50):
                with contextlib.suppress(OSError):
                    reader, writer = await asyncio.open_connection("127.0.0.1", local_port)
                    writer.write(b"GET / HTTP/1.0\r\n\r\n")
                    body = await reader.read()
                    writer.close()
                    if body.startswith(b"HTTP/1.0 200"):
                        break
                await asyncio.sleep(0.2)
            assert body.startswith(b"HTTP/1.0 200")
            await orch.ports_remove(local_port)
        finally:
            await orch.jobs_stop("web")
    finally:
        await orch.close()


async def test_wrong_host_key_from_the_relay_is_refused(
    fake_gh: Path, project: Path, orch_home: Path, sshd: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay presenting another key than the one pinned through gh is refused."""
    _toml(project)
    orch = Orchestrator(cwd=project)
    try:
        await orch.up()
        other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEc4k5mK0f5uQj5C8a1m6yU9Zq4b1n0yVv6l0l3cF0Fh"
        from sidecar.ssh import keys

        keys.pin_host_key(orch.layout, "orch-proj-cs", other)
        # `up` may already hold a pooled connection (it starts the idle agent): a NEW
        # connection through the relay (a fresh process's pool) is what must be refused.
        await orch.close()
        orch = Orchestrator(cwd=project)
        target = await orch.ssh_target()
        with pytest.raises(HostKeyMismatch):
            await orch.pool.run(target, "true")
    finally:
        await orch.close()
