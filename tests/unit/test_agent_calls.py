"""The agent's `call` request: only allow-listed facade methods run, with checked parameters
and a bound; results come back as JSON and errors as the same OrchError class (client side:
`agent_calls.arequest`, against a socket server of this test)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from sidecar import agent_calls
from sidecar import agent_client as client
from sidecar.agent import calls, status
from sidecar.app import Orchestrator
from sidecar.errors import NotFound, OrchError, UsageError
from sidecar.layout import Layout


def test_the_allow_list_and_the_bounds_name_the_same_methods() -> None:
    assert set(calls.CALLS) == set(agent_calls.CALL_TIMEOUTS_S)
    assert all(
        hasattr(Orchestrator, m) for m in calls.CALLS if m not in ("terminate", "down_check")
    )


@pytest.fixture
def orch(tmp_path: Path) -> Orchestrator:
    project = tmp_path / "project"
    project.mkdir()
    return Orchestrator(cwd=project, layout=Layout(tmp_path / "home"))


@pytest.mark.parametrize("method", ["nope", "__init__", "close", "pool", None, 3])
async def test_only_allow_listed_methods_run(orch: Orchestrator, method: Any) -> None:
    with pytest.raises(UsageError, match="does not run") as caught:
        await calls.run(orch, {"method": method}, lambda _: None)
    assert "jobs_run" in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("method", "params", "problem"),
    [
        ("jobs_run", {"name": "a", "command": 5}, "command"),
        ("jobs_run", {"name": "a", "command": ["x", 1]}, "command"),
        ("jobs_run", {"name": "a", "command": "x", "env": {"K": 1}}, "env"),
        ("jobs_run", {"command": "x"}, "name"),
        ("jobs_logs", {"name": "a", "tail": -1}, "tail"),
        ("jobs_rm", {"name": "a", "purge": "yes"}, "purge"),
        ("machines_overview", {"names": "local"}, "names"),
        ("jobs_stop", {"name": "a", "on": 3}, "on"),
        ("jobs_run", {"name": "a", "command": "x", "snapshot": "no"}, "snapshot"),
        ("ssh_argv", {"command": "ls"}, "command"),
        ("profile", {"request": {"model": "nope"}}, "request"),
        ("profile", {"out": "relative/folder"}, "out"),
    ],
)
async def test_bad_parameters_are_a_usage_error(
    orch: Orchestrator, method: str, params: dict[str, Any], problem: str
) -> None:
    with pytest.raises(UsageError, match=problem):
        await calls.run(orch, {"method": method, "params": params}, lambda _: None)


async def test_a_result_comes_back_as_json(orch: Orchestrator) -> None:
    reply = await calls.run(orch, {"method": "machines_overview"}, lambda _: None)
    result = reply["result"]
    json.dumps(result)  # plain JSON, as the language server sends it
    assert result["default"] == "local"
    assert [(m["name"], m["state"]) for m in result["machines"]] == [("local", "stopped")]


async def test_an_operation_past_its_bound_is_an_error(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def forever(*_: Any) -> None:
        await asyncio.sleep(30)

    monkeypatch.setitem(calls.CALLS, "jobs_status", lambda o, m, p, _: forever())
    monkeypatch.setitem(agent_calls.CALL_TIMEOUTS_S, "jobs_status", 0.05)
    with pytest.raises(OrchError, match=r"jobs_status did not finish within 0\.05 s"):
        await calls.run(orch, {"method": "jobs_status"}, lambda _: None)


def _server(path: Path, lines: list[dict[str, Any]] | None, seen: list[bytes]) -> socket.socket:
    """Answers one request with `lines` (None: never answers, records what it then reads:
    b"" once the client hung up)."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        seen.append(conn.recv(65536))
        if lines is None:
            conn.settimeout(5)
            seen.append(conn.recv(1024))
        else:
            conn.sendall(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server


async def test_progress_then_an_error_raised_as_its_class(tmp_path: Path) -> None:
    paths = client.agent_paths(tmp_path)
    paths.folder.mkdir()
    error = {"ok": False, "kind": "NotFound", "message": "no job 'x'", "hint": "see orch jobs"}
    error |= {"action": "startMachine", "target": "local", "exit_code": 3}
    seen: list[bytes] = []
    server = _server(paths.socket, [{"progress": "step 1"}, {"progress": "step 2"}, error], seen)
    steps: list[str] = []
    try:
        with pytest.raises(NotFound) as caught:
            await agent_calls.arequest(paths, {"op": "call"}, timeout=5, progress=steps.append)
    finally:
        server.close()
    assert steps == ["step 1", "step 2"]
    exc = caught.value
    assert (exc.message, exc.hint, exc.action, exc.target) == (
        "no job 'x'",
        "see orch jobs",
        "startMachine",
        "local",
    )


async def test_an_unknown_error_kind_is_an_orch_error(tmp_path: Path) -> None:
    paths = client.agent_paths(tmp_path)
    paths.folder.mkdir()
    server = _server(paths.socket, [{"ok": False, "kind": "Exception", "message": "m"}], [])
    try:
        with pytest.raises(OrchError) as caught:
            await agent_calls.arequest(paths, {"op": "call"}, timeout=5)
    finally:
        server.close()
    assert type(caught.value) is OrchError


async def test_nothing_listening_is_agent_down_and_a_cancel_hangs_up(tmp_path: Path) -> None:
    paths = client.agent_paths(tmp_path)
    paths.folder.mkdir()
    with pytest.raises(agent_calls.AgentDown):  # not sent: the facade may start the agent, retry
        await agent_calls.arequest(paths, {"op": "call"}, timeout=5)
    seen: list[bytes] = []
    server = _server(paths.socket, None, seen)
    try:
        task = asyncio.ensure_future(agent_calls.arequest(paths, {"op": "call"}, timeout=30))
        while not seen:
            await asyncio.sleep(0.01)
        task.cancel()  # an editor's $/cancelRequest: the agent sees the hang-up
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(200):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        server.close()
    assert seen[1] == b""


async def test_a_lost_answer_is_unavailable_not_down(tmp_path: Path) -> None:
    paths = client.agent_paths(tmp_path)
    paths.folder.mkdir()
    server = _server(paths.socket, [], [])  # reads the request, closes without an answer
    try:
        with pytest.raises(client.AgentUnavailable, match="without an answer") as caught:
            await agent_calls.arequest(paths, {"op": "call"}, timeout=5)
    finally:
        server.close()
    assert not isinstance(caught.value, agent_calls.AgentDown)  # sent: never sent twice


def test_a_config_error_keeps_its_per_line_problems_over_the_wire() -> None:
    from remote_config.loader import ConfigProblem
    from sidecar.agent.status import error_reply
    from sidecar.errors import ConfigFileError

    problems = [
        ConfigProblem("/p/orch.toml", 2, "jobs.snapshot", "Input should be a valid boolean", 1),
        ConfigProblem("/p/orch.toml", 4, "nope", "unknown key 'nope'"),
    ]
    sent = json.loads(
        json.dumps({"ok": False, **error_reply(ConfigFileError("2", problems=problems))})
    )
    with pytest.raises(ConfigFileError) as caught:
        client.raise_reply(sent)
    assert caught.value.problems == problems
    assert caught.value.exit_code == 3


def test_a_client_with_other_settings_is_told_so_and_nothing_runs() -> None:
    base = {"HOME": "/home/u", "AWS_PROFILE": "work", "PATH": "/bin", "ORCH_NO_AGENT": "1"}
    key = client.env_key(base)
    assert client.env_key({**base, "PATH": "/usr/bin", "ORCH_DEBUG": "1"}) == key  # client-only
    assert client.env_key({**base, "AWS_PROFILE": "other"}) != key
    assert client.env_key({**base, "ORCH_SSH_USER_CONFIG": "/x"}) != key
    assert status.env_differs({"op": "call"}) is None  # a window's request: not checked
    assert status.env_differs({"env": status.ENV_KEY}) is None
    reply = status.env_differs({"env": "0" * 16})
    assert reply is not None and reply["env_differs"] and not reply["ok"]
