"""Idle stop through the real sidecar: the warning arrives as an `orch/status` change before
the stop, `orch.idle.keep` ("Keep running") resets the timer, and the stop is pushed too; the
spend today past the daily budget arrives in the same notification."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.helpers import stop_pid
from tests.lsp.helpers import (
    execute,
    machine_down,
    module_home,
    status_notifications,
    wait_for_status,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOME = module_home("idle")
PROJECT = HOME / "project"


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar"],
        server_env={
            **os.environ,
            "ORCH_HOME": str(HOME / "orch-home"),
            "ORCH_IDLE_INTERVAL": "0.3",
        },
    ),
)
async def client(lsp_client: LanguageClient):
    PROJECT.mkdir(parents=True, exist_ok=True)
    # $1 a second: the daily budget is crossed before the warning (the cost guard's push).
    (PROJECT / "orch.toml").write_text(
        '[machines.local]\nkind = "local"\nidle_stop = "8s"\nprice_per_hour = 3600.0\n'
        "[cost]\ndaily_budget = 2.0\n"
    )
    status_notifications(lsp_client)
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            root_uri=PROJECT.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=PROJECT.as_uri(), name="project")],
            initialization_options={"clientName": "pytest"},
        )
    )
    yield
    await machine_down(lsp_client, HOME)
    await lsp_client.shutdown_session()
    pid_file = HOME / "orch-home" / "machines" / "local" / "home" / ".orch" / "idle" / "agent.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text())
        if b"orch_idle_agent" in Path(f"/proc/{pid}/cmdline").read_bytes():
            stop_pid(pid)


def _idle(status: dict) -> dict:
    return status.get("idle") or {}


async def test_warning_is_pushed_keep_resets_then_the_stop_is_pushed(
    client: LanguageClient,
) -> None:
    await execute(client, "orch.machine.up", {})
    warned = await wait_for_status(client, lambda s: _idle(s).get("action") == "warn", 15)
    assert " · stops in " in _idle(warned)["line"]
    assert warned["machine"]["state"] == "running"
    assert warned["cost"]["over_budget"] and warned["cost"]["spend_today"] >= 2.0, warned["cost"]
    assert "over the $2.00 daily budget" in warned["cost"]["line"]
    kept = await execute(client, "orch.idle.keep", {})
    assert kept is not None
    received = client.statuses  # type: ignore[attr-defined]
    mark = len(received)

    def after_keep(test):
        return lambda s: any(x is s for x in received[mark:]) and test(s)

    await wait_for_status(client, after_keep(lambda s: _idle(s).get("action") == "keep"), 10)
    stopped = await wait_for_status(
        client, after_keep(lambda s: s["machine"]["state"] == "stopped"), 20
    )
    assert stopped["idle"] is None
