"""The language server hosted in the orch agent (pytest-lsp against the real sidecar: the
bridge `python -m sidecar`, the agent, the `orch` command beside it, the embedded local
machine).

Each window's server subscribes to the agent's watch of its project and sends each change as
`orch/status`: a job started from the CLI reaches it with no polling (the watch's idle
interval is a minute here, so only the CLI's poke can make the agent read), over the agent's
one SSH connection to the machine, and a second window (another bridge) sees the same
through the same watch (neither bridge holds a connection); a SIGKILLed agent is started
again by the bridge, and its status comes back, bounded. `ORCH_NO_AGENT=1` keeps the server
in the window's process.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient as PlainClient
from pytest_lsp import ClientServerConfig, LanguageClient

from sidecar.errors import NotFound
from tests.helpers import run_orch, run_orch_checked
from tests.integration.test_agent import established_to, machine_port
from tests.lsp.helpers import (
    _plain,
    execute,
    machine_down,
    module_home,
    status_notifications,
    wait_for_status,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.random_order(disabled=True)]

HOME = module_home("agent")
PROJECT = HOME / "project"
ENV = {
    "ORCH_HOME": str(HOME / "orch-home"),
    "ORCH_SSH_USER_CONFIG": str(HOME / "user-ssh-config"),
    "ORCH_STATUS_IDLE_S": "60",  # the agent's watch reads only when poked (or busy)
}


def agent_pid() -> int | None:
    try:
        pid = json.loads((HOME / "orch-home" / "agent" / "state.json").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None
    return pid if isinstance(pid, int) and Path(f"/proc/{pid}").exists() else None


def server_pids() -> list[int]:
    """The language servers' pids: each `python -m sidecar` of this test's $ORCH_HOME."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd[1:3] == [b"-m", b"sidecar"] and f"ORCH_HOME={ENV['ORCH_HOME']}".encode() in env:
            found.append(int(entry.name))
    return found


def orch(*args: str) -> str:
    """A CLI command beside the windows: a thin client of the same agent (no asyncssh)."""
    done, heavy = run_orch_checked(*args, cwd=PROJECT, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "asyncssh" not in heavy, f"orch {' '.join(args)} imported {heavy}"
    return done.stdout


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar"], server_env={**os.environ, **ENV}
    ),
)
async def client(lsp_client: LanguageClient):
    PROJECT.mkdir(parents=True, exist_ok=True)
    (PROJECT / "orch.toml").write_text("[jobs]\nsnapshot = false\n")
    status_notifications(lsp_client)
    lsp_client.logs = []  # type: ignore[attr-defined]
    lsp_client.feature("orch/log")(
        lambda params: lsp_client.logs.append((params.name, params.text))  # type: ignore[attr-defined]
    )
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            root_uri=PROJECT.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=PROJECT.as_uri(), name="project")],
        )
    )
    yield
    await machine_down(lsp_client, HOME)
    await lsp_client.shutdown_session()
    run_orch("down", "--force", cwd=PROJECT, env=ENV)
    pid = agent_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)


def running(name: str):
    return lambda s: any(j["name"] == name and j["state"] == "running" for j in s["jobs"])


async def test_a_cli_job_is_pushed_to_the_language_server_over_the_agents_one_connection(
    client: LanguageClient,
) -> None:
    await wait_for_status(client, lambda s: s["machine"]["state"] == "stopped")
    await asyncio.to_thread(orch, "up")
    await wait_for_status(client, lambda s: s["machine"]["state"] == "running", timeout=10)
    # A second VS Code window on the same project: another language server, same agent.
    second = PlainClient("second-window", "1")
    seconds: list[dict] = []
    second.feature("orch/status")(lambda params: seconds.append(_plain(params)))
    await second.start_io(
        sys.executable, "-m", "sidecar", cwd=str(PROJECT), env={**os.environ, **ENV}
    )
    try:
        await second.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(), root_uri=PROJECT.as_uri()
            )
        )
        second.initialized(types.InitializedParams())
        began = time.monotonic()
        await asyncio.to_thread(orch, "run", "from-cli", "--", "sleep", "60")
        await wait_for_status(client, running("from-cli"), timeout=5)
        while not any(running("from-cli")(s) for s in seconds):
            assert time.monotonic() - began < 5, seconds[-1:]
            await asyncio.sleep(0.05)
        assert time.monotonic() - began < 5  # the CLI's poke, not a 60 s watch interval

        # Everything both windows show came over the agent's one connection; they hold none.
        agent = agent_pid()
        assert agent is not None
        port = machine_port(HOME / "orch-home")
        assert established_to(agent, port) == 1
        servers = server_pids()
        assert len(servers) == 2 and all(established_to(pid, port) == 0 for pid in servers)
        info = agent_info()
        assert info["connections"] == {"orch-local": "connected"}
        assert info["watched"] == 1  # both windows share one watch (one read per change)
        assert info["windows"] == 2  # both servers hosted in the agent
        assert json.loads(orch("status", "--json"))["jobs"][0]["name"] == "from-cli"
        assert agent_info()["watched"] == 1  # and so does `orch status`
    finally:
        await second.shutdown_async(None)
        second.exit(None)
        await second.stop()


def agent_info() -> dict:
    from sidecar import agent_client

    return agent_client.call(agent_client.agent_paths(HOME / "orch-home"), {"op": "info"})


async def test_kill_9_of_the_agent_the_server_subscribes_again_and_recovers(
    client: LanguageClient,
) -> None:
    old = agent_pid()
    assert old is not None
    os.kill(old, signal.SIGKILL)
    began = time.monotonic()
    while agent_pid() in (None, old):  # the window's bridge starts a new agent
        assert time.monotonic() - began < 15, "no new agent"
        await asyncio.sleep(0.05)
    status = await asyncio.wait_for(execute(client, "orch.status", {"fresh": True}), 15)
    assert status["machine"]["state"] == "running" and running("from-cli")(status)
    # Pushes flow again from the new agent: stopping the job from the CLI reaches the server.
    count = len(client.statuses)  # type: ignore[attr-defined]
    await asyncio.to_thread(orch, "stop", "from-cli")
    await wait_for_status(
        client,
        lambda s: s in client.statuses[count:] and not running("from-cli")(s),  # type: ignore[attr-defined]
        timeout=10,
    )
    assert time.monotonic() - began < 20


async def _until(test: Any, timeout: float = 10.0) -> None:
    began = time.monotonic()
    while not test():
        assert time.monotonic() - began < timeout, "not within the timeout"
        await asyncio.sleep(0.05)


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


async def test_a_window_runs_machines_and_jobs_in_the_agent_and_never_loads_asyncssh(
    client: LanguageClient,
) -> None:
    """machine.down/up, jobs.run/follow/stop/rm, machine.list, idle.status and
    ssh.writeConfig through the window run in the agent: the server holds no connection to the machine and
    never imports asyncssh (which loads cryptography's Rust extension: seen in its maps)."""
    (server,) = server_pids()
    down = await execute(client, "orch.machine.down", {"force": True})
    assert down["state"] == "stopped"
    token = "up-via-agent"
    client.progress_reports.setdefault(token, [])  # type: ignore[attr-defined]
    up = await execute(client, "orch.machine.up", {}, token=token)
    assert up["state"] == "running" and up["address"].startswith("127.0.0.1:")
    steps = [getattr(r, "message", None) for r in client.progress_reports[token]]  # type: ignore[attr-defined]
    assert any(m and "starting the local machine" in m for m in steps), steps  # streamed

    gate = HOME / "gate"  # the job writes its second line once the test creates this file
    gate.unlink(missing_ok=True)
    command = (
        f"echo first-line; while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.05; done; "
        "echo second-line; sleep 60"
    )
    job = await execute(client, "orch.jobs.run", {"name": "win", "command": command})
    assert job["name"] == "win" and job["state"] == "running"
    await wait_for_status(client, running("win"), timeout=10)
    # orch/log: the agent streams the log while the job writes (a line after the follow).
    assert await execute(client, "orch.jobs.follow", {"name": "win"}) == {"name": "win"}
    logs = client.logs  # type: ignore[attr-defined]
    await _until(lambda: "first-line" in "".join(t for n, t in logs if n == "win"))
    gate.touch()
    await _until(lambda: "second-line" in "".join(t for n, t in logs if n == "win"))
    assert agent_info()["connections"] == {"orch-local": "connected"}
    listed = await execute(client, "orch.machine.list", {})
    assert listed["selected"] == "local"
    assert [(m["name"], m["state"]) for m in listed["machines"]] == [("local", "running")]
    written = await execute(client, "orch.ssh.writeConfig", {})
    assert written["path"]
    # No [idle] in this orch.toml: no idle agent on the machine, so no idle status (None).
    assert await execute(client, "orch.idle.status", {}) is None

    # An OrchError in the agent reaches the editor as the same error: kind, code, hint.
    with pytest.raises(JsonRpcException) as caught:
        await execute(client, "orch.jobs.stop", {"name": "no-such-job"})
    assert caught.value.data["kind"] == "NotFound"
    assert caught.value.code == NotFound.exit_code
    stopped = await execute(client, "orch.jobs.stop", {"name": "win"})
    assert stopped["state"] != "running"
    assert (await execute(client, "orch.jobs.rm", {"name": "win"})) == {"name": "win"}

    assert "cryptography" not in _maps(server)  # asyncssh was never imported
    port = machine_port(HOME / "orch-home")
    assert established_to(server, port) == 0
    agent = agent_pid()
    assert agent is not None and established_to(agent, port) == 1
    assert "cryptography" in _maps(agent)  # (the check can see it where it is loaded)


async def test_without_the_agent_a_window_reads_the_status_itself(client: LanguageClient) -> None:
    """`ORCH_NO_AGENT=1`: the old path, the server's own watch over its own connection."""
    window = PlainClient("no-agent-window", "1")
    got: list[dict] = []
    window.feature("orch/status")(lambda params: got.append(_plain(params)))
    env = {**os.environ, **ENV, "ORCH_NO_AGENT": "1", "ORCH_STATUS_IDLE_S": "0.3"}
    await window.start_io(sys.executable, "-m", "sidecar", cwd=str(PROJECT), env=env)
    try:
        await window.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(), root_uri=PROJECT.as_uri()
            )
        )
        window.initialized(types.InitializedParams())
        began = time.monotonic()
        while not any(s["machine"]["state"] == "running" for s in got):
            assert time.monotonic() - began < 10, got[-1:]
            await asyncio.sleep(0.05)
        own = [pid for pid in server_pids() if b"ORCH_NO_AGENT=1" in _environ(pid)]
        assert len(own) == 1
        assert established_to(own[0], machine_port(HOME / "orch-home")) == 1
    finally:
        await window.shutdown_async(None)
        window.exit(None)
        await window.stop()


def _environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()
