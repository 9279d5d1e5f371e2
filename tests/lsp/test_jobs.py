"""Jobs through the real sidecar (pytest-lsp) on the embedded local machine: run, the
`orch/status` pushes as a job starts and ends, logs, follow (`orch/log`), stop, restart, rm,
and the errors a client can cause."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pytest_lsp import LanguageClient

from sidecar.app import Orchestrator
from sidecar.errors import OrchError
from sidecar.layout import Layout
from tests.lsp.helpers import (
    execute,
    machine_down,
    module_home,
    status_notifications,
    wait_for_status,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOME = module_home("jobs")
PROJECT = HOME / "project"
GPU_PYTHON = os.environ.get("ORCH_GPU_PYTHON", "")
REPO = Path(__file__).resolve().parents[2]


def job(status: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((j for j in status["jobs"] if j["name"] == name), None)


@pytest_lsp.fixture(
    scope="module",
    config=pytest_lsp.ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar"],
        server_env={
            **os.environ,
            "ORCH_HOME": str(HOME / "orch-home"),
            "ORCH_SSH_USER_CONFIG": str(HOME / "user-ssh-config"),
        },
    ),
)
async def client(lsp_client: LanguageClient):
    PROJECT.mkdir(parents=True, exist_ok=True)
    gpu = f'[gpu]\npython = "{GPU_PYTHON}"\n' if GPU_PYTHON else ""
    (PROJECT / "orch.toml").write_text('[debug]\npython = "python3"\n' + gpu)
    (PROJECT / "debugged.py").write_text("import time\nprint('debugged')\ntime.sleep(60)\n")
    status_notifications(lsp_client)
    logs: list[tuple[str, str]] = []
    lsp_client.logs = logs  # type: ignore[attr-defined]

    @lsp_client.feature("orch/log")
    def on_log(params: Any) -> None:
        logs.append((params.name, params.text))

    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            workspace_folders=[types.WorkspaceFolder(uri=PROJECT.as_uri(), name="project")],
        )
    )
    await execute(lsp_client, "orch.machine.up", {})
    yield
    await machine_down(lsp_client, HOME)
    await lsp_client.shutdown_session()


async def test_run_pushes_running_then_succeeded(client: LanguageClient) -> None:
    info = await execute(
        client, "orch.jobs.run", {"name": "quick", "command": "echo start; sleep 1.5; echo done"}
    )
    assert info["name"] == "quick"
    assert info["state"] == "running"

    running = await wait_for_status(
        client, lambda s: (job(s, "quick") or {}).get("state") == "running"
    )
    assert job(running, "quick")["started"]
    ended = await wait_for_status(
        client, lambda s: (job(s, "quick") or {}).get("state") == "succeeded", timeout=20
    )
    assert job(ended, "quick")["exit_code"] == 0
    assert job(ended, "quick")["ended"]

    listed = await execute(client, "orch.jobs.status", {})
    assert [j["state"] for j in listed["jobs"] if j["name"] == "quick"] == ["succeeded"]
    logs = await execute(client, "orch.jobs.logs", {"name": "quick"})
    assert logs["name"] == "quick"
    assert "start" in logs["text"] and "done" in logs["text"]


async def test_failure_is_pushed_with_its_exit_code(client: LanguageClient) -> None:
    await execute(client, "orch.jobs.run", {"name": "bad", "command": ["sh", "-c", "exit 3"]})
    ended = await wait_for_status(
        client, lambda s: (job(s, "bad") or {}).get("state") == "failed", timeout=20
    )
    assert job(ended, "bad")["exit_code"] == 3


async def test_follow_streams_the_log(client: LanguageClient) -> None:
    await execute(
        client,
        "orch.jobs.run",
        {"name": "ticker", "command": "for i in 1 2 3 4; do echo tick-$i; sleep 0.4; done"},
    )
    assert await execute(client, "orch.jobs.follow", {"name": "ticker"}) == {"name": "ticker"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = "".join(t for n, t in client.logs if n == "ticker")  # type: ignore[attr-defined]
        if "tick-4" in text:
            break
        await asyncio.sleep(0.1)
    assert [f"tick-{i}" in text for i in range(1, 5)] == [True] * 4, text
    assert text.index("tick-1") < text.index("tick-4")
    assert await execute(client, "orch.jobs.unfollow", {"name": "ticker"}) == {"name": "ticker"}


async def test_stop_restart_and_remove(client: LanguageClient) -> None:
    await execute(client, "orch.jobs.run", {"name": "sleeper", "command": "sleep 60"})
    stopped = await execute(client, "orch.jobs.stop", {"name": "sleeper"})
    assert stopped["state"] == "stopped"
    await wait_for_status(client, lambda s: (job(s, "sleeper") or {}).get("state") == "stopped")

    restarted = await execute(client, "orch.jobs.restart", {"name": "sleeper"})
    assert restarted["state"] == "running"
    await execute(client, "orch.jobs.stop", {"name": "sleeper"})

    seen = len(client.statuses)  # type: ignore[attr-defined]
    assert await execute(client, "orch.jobs.rm", {"name": "sleeper"}) == {"name": "sleeper"}
    listed = await execute(client, "orch.jobs.status", {})
    assert "sleeper" not in [j["name"] for j in listed["jobs"]]
    # A status pushed after the removal (not one from before the job ran) lacks it.
    await wait_for_status(
        client,
        lambda s: job(s, "sleeper") is None and any(s is x for x in client.statuses[seen:]),  # type: ignore[attr-defined]
    )


async def test_debug_attach_config(client: LanguageClient) -> None:
    # Start a job under debugpy the way `orch debug` does (the same ORCH_HOME and project).
    orch = Orchestrator(cwd=PROJECT, layout=Layout(HOME / "orch-home"))
    try:
        await orch.sync_now()
        session = await orch.debug_start("dbg", ["python3", "debugged.py"], snapshot=False)
        config = await execute(client, "orch.debug.attachConfig", {"name": "dbg"})
        assert config["type"] == "debugpy"
        assert config["request"] == "attach"
        assert config["connect"] == {"host": "127.0.0.1", "port": session.local_port}
        assert config["pathMappings"][0]["localRoot"] == str(PROJECT)
        assert config["pathMappings"][0]["remoteRoot"] == session.remote_root
    finally:
        await execute(client, "orch.jobs.stop", {"name": "dbg"})
        for port in (await orch.ports_list()).ports:
            # The sidecar removes a debug forward itself once its job ends: the forward (and
            # the forwarder with it) may be gone by the time this asks.
            with contextlib.suppress(OrchError):
                await orch.ports_remove(port.local_port)
        await orch.close()

    with pytest.raises(JsonRpcException) as caught:
        await execute(client, "orch.debug.attachConfig", {"name": "quick"})  # not under debugpy
    assert caught.value.data["kind"]
    assert caught.value.data["hint"]


async def test_unknown_job_is_not_found(client: LanguageClient) -> None:
    for command in ("orch.jobs.logs", "orch.jobs.follow", "orch.jobs.stop"):
        with pytest.raises(JsonRpcException) as caught:
            await execute(client, command, {"name": "ghost"})
        assert caught.value.code == 4, command
        assert caught.value.data["kind"] == "NotFound"
        assert "ghost" in caught.value.message
        assert caught.value.data["hint"]


async def test_bad_job_name_is_a_usage_error(client: LanguageClient) -> None:
    with pytest.raises(JsonRpcException) as caught:
        await execute(client, "orch.jobs.run", {"name": "-rf", "command": "true"})
    assert caught.value.code == 2
    assert caught.value.data["kind"] == "UsageError"


@pytest.mark.parametrize(
    "arguments",
    [
        {"name": "x"},  # no command
        {"name": "x", "command": 5},
        {"name": "x", "command": "true", "env": {"A": 1}},
        {"name": "x", "command": "true", "replace": "sometimes"},
    ],
)
async def test_malformed_run_is_invalid_params(
    client: LanguageClient, arguments: dict[str, Any]
) -> None:
    with pytest.raises(JsonRpcInvalidParams) as caught:
        await execute(client, "orch.jobs.run", arguments)
    assert caught.value.message.startswith("orch.jobs.run: ")


async def test_debug_start_returns_a_configuration_for_a_waiting_job(
    client: LanguageClient,
) -> None:
    orch = Orchestrator(cwd=PROJECT, layout=Layout(HOME / "orch-home"))
    try:
        await orch.sync_now()
        session = await execute(
            client,
            "orch.debug.start",
            {"name": "dbg2", "command": "python3 debugged.py", "snapshot": False},
        )
        config = session["configuration"]
        assert config["name"] == "Orch: attach dbg2"
        assert config["connect"] == {"host": "127.0.0.1", "port": session["local_port"]}
        listed = await execute(client, "orch.jobs.status", {})
        dbg = next(j for j in listed["jobs"] if j["name"] == "dbg2")
        assert dbg["state"] == "running"
        assert f"--listen 127.0.0.1:{session['remote_port']}" in dbg["command"]
    finally:
        await execute(client, "orch.jobs.stop", {"name": "dbg2"})
        for port in (await orch.ports_list()).ports:
            # The sidecar removes a debug forward itself once its job ends: the forward (and
            # the forwarder with it) may be gone by the time this asks.
            with contextlib.suppress(OrchError):
                await orch.ports_remove(port.local_port)
        await orch.close()
    with pytest.raises(JsonRpcInvalidParams):
        await execute(client, "orch.debug.start", {"name": "x"})


async def test_status_answers_from_a_recent_read_until_a_command_runs(
    client: LanguageClient,
) -> None:
    pushes: list = client.statuses  # type: ignore[attr-defined]
    for _ in range(5):  # a push still on its way from an earlier test's command is a change
        seen = len(pushes)
        first = await execute(client, "orch.status", {})
        again = await execute(client, "orch.status", {})
        if len(pushes) == seen:
            break
    assert again == first  # within MAX_AGE_S and nothing changed: the same read
    await execute(client, "orch.jobs.run", {"name": "cache-probe", "command": "sleep 30"})
    try:
        after = await execute(client, "orch.status", {})  # the command made the cache stale
        assert any(j["name"] == "cache-probe" for j in after["jobs"])
        fresh = await execute(client, "orch.status", {"fresh": True})
        assert any(j["name"] == "cache-probe" for j in fresh["jobs"])
    finally:
        await execute(client, "orch.jobs.stop", {"name": "cache-probe"})


@pytest.mark.skipif(
    not GPU_PYTHON or not Path(GPU_PYTHON).exists(),
    reason="needs the GPU-service environment: scripts/test.sh sets ORCH_GPU_PYTHON",
)
async def test_profile_run_returns_the_table_and_saves_the_trace_in_the_project(
    client: LanguageClient,
) -> None:
    # What the extension's "Orch: Profile GPU Service…" sends (plus test-sized options).
    result = await execute(
        client,
        "orch.profile.run",
        {
            "model": "birefnet", "requests": 1, "batch_size": 2, "lanes": 2, "size": 64,
            "random_weights": True, "env": {"PYTHONPATH": str(REPO)},
            "extra": ["--birefnet-backbone", "pvt_v2_b0", "--birefnet-size", "64",
                      "--device", "cpu"],
        },
    )  # fmt: skip
    assert result["table"].startswith("profile: birefnet") and "lane1" in result["table"]
    local = Path(result["local_dir"])
    assert local.parent == PROJECT / "profiles"
    assert (local / "trace.json").stat().st_size > 1000
    assert sorted(Path(f).name for f in result["files"]) == ["summary.json", "trace.json"]
    assert result["summary"]["images"] == 2
