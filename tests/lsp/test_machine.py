"""The real sidecar (`python -m sidecar`) over stdio, driven by pytest-lsp: command round
trips, `orch/status` notifications, `$/progress`, cancellation and JSON-RPC errors, against
the embedded local machine in a throwaway $ORCH_HOME."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.lsp.helpers import (
    execute,
    machine_down,
    module_home,
    status_notifications,
    wait_for_status,
)

# One machine's life in order (status before up, up, use, down): pytest-random-order
# shuffles this module among the others but keeps its steps in order.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.random_order(disabled=True)]

HOME = module_home("machine")
PROJECT = HOME / "project"
IDLE_S = 0.4

EXPECTED_COMMANDS = {
    "orch.status",
    "orch.machine.up",
    "orch.machine.down",
    "orch.machine.status",
    "orch.machine.list",
    "orch.machine.select",
    "orch.machine.terminate",
    "orch.machine.terminatePlan",
    "orch.ssh.writeConfig",
    "orch.ports.list",
    "orch.ports.add",
    "orch.ports.remove",
    "orch.sync.start",
    "orch.sync.stop",
    "orch.sync.now",
    "orch.sync.status",
    "orch.profile.run",
}


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar"],
        server_env={
            **os.environ,
            "ORCH_HOME": str(HOME / "orch-home"),
            # The user's ssh config that writeConfig adds its Include line to.
            "ORCH_SSH_USER_CONFIG": str(HOME / "user-ssh-config"),
            # Idle status checks every 0.4 s (5 s by default): the no-push window is short.
            "ORCH_STATUS_IDLE_S": str(IDLE_S),
        },
    ),
)
async def client(lsp_client: LanguageClient):
    PROJECT.mkdir(parents=True, exist_ok=True)
    blackhole, fillers = _blackhole()
    (PROJECT / "orch.toml").write_text(
        f'[machines.blackhole]\nkind = "ssh"\nhost = "127.0.0.1"\nport = {blackhole.getsockname()[1]}\n'
    )
    status_notifications(lsp_client)
    result = await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                window=types.WindowClientCapabilities(work_done_progress=True)
            ),
            root_uri=PROJECT.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=PROJECT.as_uri(), name="project")],
            initialization_options={"logLevel": "debug", "clientName": "pytest"},
        )
    )
    lsp_client.init_result = result  # type: ignore[attr-defined]
    yield
    await machine_down(lsp_client, HOME)
    await lsp_client.shutdown_session()
    for sock in [blackhole, *fillers]:
        sock.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _blackhole() -> tuple[socket.socket, list[socket.socket]]:
    """A listening socket whose accept queue is full, so new connections hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(server.getsockname())
        fillers.append(filler)
    return server, fillers


async def test_advertises_every_command(client: LanguageClient) -> None:
    provider = client.init_result.capabilities.execute_command_provider  # type: ignore[attr-defined]
    assert provider is not None
    assert set(provider.commands) >= EXPECTED_COMMANDS


async def test_status_before_up(client: LanguageClient) -> None:
    status = await execute(client, "orch.status")
    assert status["machine"]["name"] == "local"
    assert status["machine"]["kind"] == "local"
    assert status["machine"]["state"] == "stopped"
    assert status["jobs"] == []
    assert status["sync"]["state"] == "off"
    assert status["ports"] == []
    # The watcher pushed the same status once the client was initialized.
    first = await wait_for_status(client, lambda s: True)
    assert first["machine"] == status["machine"]


async def test_up_reports_progress_and_notifies(client: LanguageClient) -> None:
    token = "up-1"
    client.progress_reports.setdefault(token, [])
    info = await execute(client, "orch.machine.up", {}, token=token)
    assert info["state"] == "running"
    assert info["address"].startswith("127.0.0.1:")

    kinds = [type(v).__name__ for v in client.progress_reports[token]]
    assert kinds[0] == "WorkDoneProgressBegin"
    assert kinds[-1] == "WorkDoneProgressEnd"
    messages = [v.message for v in client.progress_reports[token] if hasattr(v, "message")]
    assert any(m and "starting the local machine" in m for m in messages), messages

    pushed = await wait_for_status(client, lambda s: s["machine"]["state"] == "running")
    assert pushed["machine"]["address"] == info["address"]

    again = await execute(client, "orch.machine.status", {"machine": "local"})
    assert again["state"] == "running"
    assert again["pid"] == info["pid"]


async def test_no_push_while_nothing_changes(client: LanguageClient) -> None:
    # The machine runs and nothing else moves: its uptime grows, but no notification is sent
    # across four idle checks (the interval is IDLE_S here, 5 s by default).
    await wait_for_status(client, lambda s: s["machine"]["state"] == "running")
    await asyncio.sleep(IDLE_S)
    before = len(client.statuses)  # type: ignore[attr-defined]
    pushed = client.statuses[-1]  # type: ignore[attr-defined]
    await asyncio.sleep(4 * IDLE_S + 0.2)
    assert len(client.statuses) == before  # type: ignore[attr-defined]
    # The watcher did read meanwhile: orch.status answers from its latest read (under 1 s
    # old), whose uptime moved on from the one last pushed.
    now = await execute(client, "orch.status")
    assert now["machine"]["uptime_s"] > pushed["machine"]["uptime_s"]


async def test_write_ssh_config(client: LanguageClient) -> None:
    result = await execute(client, "orch.ssh.writeConfig", {})
    path = Path(result["path"])
    assert path.is_file()
    assert result["hosts"]
    text = path.read_text()
    assert all(f"Host {host}" in text for host in result["hosts"]), text
    user = Path(result["user_config"])
    assert user == HOME / "user-ssh-config"
    assert user.read_text().startswith(f"Include {path}"), user.read_text()


async def test_port_forward_round_trip(client: LanguageClient) -> None:
    # A service on the "remote" side (the local machine is this host) and a free local port.
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"pong:" + await reader.readline())
        await writer.drain()
        writer.close()

    service = await asyncio.start_server(echo, "127.0.0.1", 0)
    remote_port = service.sockets[0].getsockname()[1]
    local_port = _free_port()
    try:
        added = await execute(
            client, "orch.ports.add", {"local_port": local_port, "remote_port": remote_port}
        )
        assert added["local_port"] == local_port
        assert added["state"] == "active"

        reader, writer = await asyncio.open_connection("127.0.0.1", local_port)
        writer.write(b"ping\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b"pong:ping\n"
        writer.close()

        listed = await execute(client, "orch.ports.list", {})
        assert [(p["local_port"], p["remote_port"], p["state"]) for p in listed["ports"]] == [
            (local_port, remote_port, "active")
        ]
        left = await execute(client, "orch.ports.remove", {"local_port": local_port})
        assert all(p["local_port"] != local_port for p in left["ports"])
    finally:
        service.close()

    with pytest.raises(JsonRpcInvalidParams) as caught:
        await execute(client, "orch.ports.add", {"local_port": 70000})
    assert "local_port" in caught.value.message


async def test_sync_round_trip(client: LanguageClient) -> None:
    (PROJECT / "notes.txt").write_text("synced by the sidecar\n")
    token = "sync-start"
    client.progress_reports.setdefault(token, [])
    started = await execute(client, "orch.sync.start", {}, token=token)
    try:
        assert started["state"] in ("idle", "syncing")
        remote = HOME / "orch-home/machines/local/home" / started["remote_dir"].removeprefix("~/")
        assert (remote / "notes.txt").read_text() == "synced by the sidecar\n"
        reports = client.progress_reports[token]
        assert type(reports[0]).__name__ == "WorkDoneProgressBegin"
        assert type(reports[-1]).__name__ == "WorkDoneProgressEnd"
        assert any(getattr(r, "percentage", None) == 100 for r in reports), reports
        await wait_for_status(client, lambda s: s["sync"]["state"] == "idle")

        (PROJECT / "more.txt").write_text("more\n")
        now = await execute(client, "orch.sync.now", {})
        assert now["state"] in ("idle", "syncing")
        for _ in range(100):
            if (remote / "more.txt").exists():
                break
            await asyncio.sleep(0.05)
        assert (remote / "more.txt").read_text() == "more\n"
        assert (await execute(client, "orch.sync.status", {}))["state"] == "idle"
    finally:
        stopped = await execute(client, "orch.sync.stop", {})
    assert stopped["state"] == "off"
    await wait_for_status(client, lambda s: s["sync"]["state"] == "off" and s["sync"]["last_sync"])


async def test_down_notifies(client: LanguageClient) -> None:
    info = await execute(client, "orch.machine.down", {})
    assert info["state"] == "stopped"
    await wait_for_status(client, lambda s: s["machine"]["state"] == "stopped")


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        ([{"machine": 5}], "machine"),
        ([{"machin": "local"}], "machin"),
        (["local"], "one JSON object"),
        ([{}, {}], "one JSON object"),
    ],
)
async def test_malformed_arguments_are_invalid_params(
    client: LanguageClient, arguments: list[Any], needle: str
) -> None:
    with pytest.raises(JsonRpcInvalidParams) as caught:
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="orch.machine.status", arguments=arguments)
        )
    assert caught.value.code == -32602
    assert "orch.machine.status" in caught.value.message
    assert needle in caught.value.message


async def test_orch_error_carries_kind_and_hint(client: LanguageClient) -> None:
    with pytest.raises(JsonRpcException) as caught:
        await execute(client, "orch.machine.status", {"machine": "nope"})
    assert caught.value.code == 4  # NotFound's exit code
    assert "nope" in caught.value.message
    assert caught.value.data["kind"] == "NotFound"
    assert "local" in caught.value.data["hint"]


async def test_unknown_command(client: LanguageClient) -> None:
    with pytest.raises(JsonRpcException) as caught:
        await execute(client, "orch.nope")
    assert caught.value.code == -32601
    assert "orch.nope" in caught.value.message


async def test_cancel_stops_a_slow_command(client: LanguageClient) -> None:
    # Machine "blackhole" points at a port whose accept queue is full: connecting to it hangs
    # until orch's 5 s timeout, so its status check is slow until cancelled.
    token = "slow-status"
    client.progress_reports.setdefault(token, [])
    started = time.monotonic()
    request = asyncio.ensure_future(
        client.protocol.send_request_async(
            types.WORKSPACE_EXECUTE_COMMAND,
            types.ExecuteCommandParams(
                command="orch.machine.status",
                arguments=[{"machine": "blackhole"}],
                work_done_token=token,
            ),
            msg_id="slow-status-request",
        )
    )
    for _ in range(200):
        if client.progress_reports[token]:
            break
        await asyncio.sleep(0.01)
    assert client.progress_reports[token], "the server never began the command"
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="slow-status-request"))
    with pytest.raises(JsonRpcRequestCancelled):
        await request
    assert time.monotonic() - started < 3.0, "cancelled too late: the command ran to its end"
    # The progress was closed, and the server answers the next request at once.
    assert type(client.progress_reports[token][-1]).__name__ == "WorkDoneProgressEnd"
    status = await execute(client, "orch.status")
    assert status["machine"]["name"] == "local"
