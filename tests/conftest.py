"""Fixtures shared by every tier: an isolated $ORCH_HOME, a project folder, real sshd."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.helpers import Sshd, make_sshd, sshd_available

# Fixtures of the GitHub API stand-in (codespaces tests), shared by unit and integration tests.
pytest_plugins = ["tests.codespaces_api.fixtures"]

# Every process this test run starts inherits this mark; at the end, any orch process that
# still carries it (a detached local agent, local machine server, forwarder or sync process a
# test did not stop itself) is stopped by its pid.
RUN_MARK = "ORCH_TEST_RUN"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault(RUN_MARK, f"{os.getpid()}-{os.urandom(4).hex()}")


def pytest_unconfigure(config: pytest.Config) -> None:
    from tests.helpers import stop_pid

    mark = f"{RUN_MARK}={os.environ.get(RUN_MARK, '')}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"sidecar" in cmdline and mark in environ.split(b"\0"):
            stop_pid(int(entry.name))
    lsp_helpers = sys.modules.get("tests.lsp.helpers")  # the language-server modules' folders
    for home in getattr(lsp_helpers, "HOMES", []):
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def orch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "orch-home"
    monkeypatch.setenv("ORCH_HOME", str(home))
    yield home
    _stop_orch_processes(home)


def _stop_orch_processes(home: Path) -> None:
    """Safety net: stop any orch background process (local machine server, port forwarder,
    sync watcher) a test left behind in its $ORCH_HOME, found through their state files."""
    from tests.helpers import stop_pid

    if not home.exists():
        return
    for state in home.rglob("*.json"):
        try:
            pid = json.loads(state.read_text()).get("pid")
            cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        if b"sidecar" in cmdline and str(home).encode() in cmdline + _environ(int(pid)):
            stop_pid(int(pid))


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    return folder


@pytest.fixture
async def local_orch(orch_home: Path, project: Path) -> AsyncIterator[object]:
    """An Orchestrator in `project` with the embedded local machine up; stopped afterwards."""
    from sidecar.app import Orchestrator

    orch = Orchestrator(cwd=project)
    await orch.up()
    try:
        yield orch
    finally:
        await orch.close()
        await orch.down()
        _kill_tmux_servers(orch_home)


def _kill_tmux_servers(root: Path) -> None:
    """Stop tmux servers whose sockets live under `root` (jobs started by a test)."""
    for sock in root.rglob("*"):
        with contextlib.suppress(OSError):
            if sock.is_socket() and "tmux" in sock.name:
                subprocess.run(
                    ["tmux", "-S", str(sock), "kill-server"], capture_output=True, timeout=10
                )


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    reason = sshd_available()
    if reason:
        pytest.skip(reason)
    # sshd reads authorized_keys as the logged-in user: keep its folder outside pytest's
    # root-only temp tree (0700), readable but not writable by others.
    folder = Path(tempfile.mkdtemp(prefix="orch-sshd-"))
    folder.chmod(0o755)
    server = make_sshd(folder)
    (folder / "authorized_keys").chmod(0o644)
    _wipe_home(server.home)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(Exception):
            subprocess.run(["pkill", "-u", server.user, "tmux"], capture_output=True, timeout=10)


@pytest.fixture
def sshd(sshd_server: Sshd) -> Sshd:
    """The session's sshd, restarted if a previous test stopped it."""
    if sshd_server.proc is None or sshd_server.proc.poll() is not None:
        sshd_server.start()
    return sshd_server


def _wipe_home(home: Path) -> None:
    """Empty the orch-test user's home (it exists only for these tests)."""
    if home.name != "orch-test" or not home.is_dir():
        return
    for child in home.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


os.environ.setdefault("ORCH_TEST", "1")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's AWS server on 127.0.0.1 (a real HTTP endpoint; boto3 is unmodified)."""
    moto_server_mod = pytest.importorskip("moto.server")
    from tests.helpers import free_port

    port = free_port()
    server = moto_server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Point boto3 at the moto server with dummy credentials, and start from a clean slate."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return moto_server
