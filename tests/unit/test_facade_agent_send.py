"""The facade's two request/reply calls to the orch agent start it and send once more only
when that is safe: `agent_call` when nothing took the request (AgentDown), never after it was
sent (it may have run); `agent_status` after any unavailability (a status read may repeat).
A failure is an OrchError saying why. `agent_client.acall(..., resend=True)` (sync start/stop/now,
forwards.host) follows the same rule: sent again only when refused unrun. The agent here is a socket server of this test that
answers as the agent does; starting one (`agent_client.ensure`) starts such a server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar import agent_client as client
from sidecar.app import Orchestrator
from sidecar.errors import OrchError
from sidecar.layout import Layout

Serve = Callable[[list[dict[str, Any]]], None]


@pytest.fixture
def orch(tmp_path: Path) -> Orchestrator:
    project = tmp_path / "project"
    project.mkdir()
    return Orchestrator(cwd=project, layout=Layout(tmp_path / "home"))


@pytest.fixture
def seen() -> list[dict[str, Any]]:
    """Every request an agent of this test read."""
    return []


@pytest.fixture
def serve(orch: Orchestrator, seen: list[dict[str, Any]]) -> Iterator[Serve]:
    """`serve(lines)` runs an agent on the orch home's socket that answers each request
    with `lines` (none: it reads the request and hangs up without an answer)."""
    paths = client.agent_paths(orch.layout)
    paths.folder.mkdir(parents=True, exist_ok=True)
    servers: list[socket.socket] = []

    def start(lines: list[dict[str, Any]]) -> None:
        for old in servers:
            old.close()
        paths.socket.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(paths.socket))
        server.listen()
        servers.append(server)

        def loop() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:  # closed by the test
                    return
                with conn:
                    seen.append(json.loads(conn.makefile().readline()))
                    conn.sendall(b"".join(json.dumps(x).encode() + b"\n" for x in lines))

        threading.Thread(target=loop, daemon=True).start()

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def started(
    monkeypatch: pytest.MonkeyPatch, orch: Orchestrator, serve: Serve
) -> Callable[[list[dict[str, Any]] | None], list[int]]:
    """`started(lines)`: starting the agent runs one answering `lines` (None: starts nothing,
    as when it could not be started); returns the list that counts the starts."""

    def arrange(lines: list[dict[str, Any]] | None) -> list[int]:
        starts: list[int] = []

        def ensure(layout: Any = None) -> tuple[client.AgentPaths, dict[str, Any]]:
            starts.append(1)
            if lines is not None:
                serve(lines)
            return client.agent_paths(orch.layout), {"ok": True}

        monkeypatch.setattr(client, "ensure", ensure)
        return starts

    return arrange


async def test_a_call_nobody_took_starts_the_agent_and_is_sent_once_more(
    orch: Orchestrator, started: Any, seen: list[dict[str, Any]]
) -> None:
    starts = started([{"ok": True, "result": {"jobs": 2}}])
    assert await orch.agent_call("jobs_status", "box", {"on": None}) == {"jobs": 2}
    assert starts == [1]
    assert [(r["op"], r["method"], r["machine"]) for r in seen] == [("call", "jobs_status", "box")]


async def test_a_call_lost_after_it_was_sent_is_an_error_never_sent_twice(
    orch: Orchestrator, serve: Serve, started: Any, seen: list[dict[str, Any]]
) -> None:
    serve([])  # reads the call, hangs up without an answer
    starts = started([{"ok": True, "result": "ran twice"}])
    with pytest.raises(OrchError) as caught:
        await orch.agent_call("jobs_status")
    assert caught.value.message.startswith("jobs_status: ")
    assert "without an answer" in caught.value.message
    assert caught.value.hint == "see `orch status` for what happened, then try again"
    assert (starts, len(seen)) == ([], 1)


async def test_a_call_the_started_agent_does_not_take_either_is_an_error(
    orch: Orchestrator, started: Any
) -> None:
    starts = started(None)
    with pytest.raises(OrchError) as caught:
        await orch.agent_call("jobs_status")
    assert caught.value.message.startswith("jobs_status: ")
    assert starts == [1]


async def test_a_status_read_is_repeated_after_any_unavailability(
    orch: Orchestrator, serve: Serve, started: Any, seen: list[dict[str, Any]]
) -> None:
    serve([])  # reads the request, hangs up without an answer: repeated all the same
    starts = started([{"ok": True, "status": {"machine": {"name": "box"}}}])
    assert await orch.agent_status("box", fresh=True) == {"machine": {"name": "box"}}
    assert starts == [1]
    assert [(r["op"], r["machine"], r["fresh"], r["lenient"]) for r in seen] == [
        ("status", "box", True, True)
    ] * 2


async def test_a_status_the_agent_cannot_give_is_an_error_saying_why(
    orch: Orchestrator, started: Any
) -> None:
    starts = started(None)
    with pytest.raises(OrchError) as caught:
        await orch.agent_status()
    assert caught.value.message and not caught.value.message.startswith("None")
    assert caught.value.hint == "it is started again by the next request"
    assert starts == [1]


STOPPING = {"ok": False, "stopping": True, "message": "the orch agent is stopping"}


async def test_acall_with_resend_sends_a_request_a_stopping_agent_refused_to_the_next(
    orch: Orchestrator, serve: Serve, started: Any, seen: list[dict[str, Any]]
) -> None:
    """What sync start/stop/now and forwards.host rely on (`acall(..., resend=True)`)."""
    serve([STOPPING])
    starts = started([{"ok": True, "started": "s1"}])
    request = {"op": "sync_start", "project": "p", "machine": "box"}
    reply = await client.acall(client.agent_paths(orch.layout), request, resend=True)
    assert reply["started"] == "s1"
    assert starts == [1]
    assert seen == [request, request]  # refused unrun, then run by the next agent: once


async def test_acall_without_resend_leaves_a_refused_request_to_its_caller(
    orch: Orchestrator, serve: Serve, started: Any, seen: list[dict[str, Any]]
) -> None:
    serve([STOPPING])
    starts = started([{"ok": True}])
    with pytest.raises(client.AgentDown):
        await client.acall(client.agent_paths(orch.layout), {"op": "hello"})
    assert (starts, len(seen)) == ([], 1)


async def test_acall_never_resends_a_request_lost_after_it_was_sent(
    orch: Orchestrator, serve: Serve, started: Any, seen: list[dict[str, Any]]
) -> None:
    serve([])  # reads it, hangs up without an answer: it may have run
    starts = started([{"ok": True}])
    with pytest.raises(client.AgentUnavailable) as caught:
        await client.acall(client.agent_paths(orch.layout), {"op": "sync_now"}, resend=True)
    assert not isinstance(caught.value, client.AgentDown)
    assert (starts, len(seen)) == ([], 1)
