"""The agent client never hangs: a dead socket, a silent agent and a dropped request each end
within their bounded timeouts with a clear message; `orch status` then answers without it."""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from sidecar import agent_calls
from sidecar import agent_client as client
from tests.helpers import run_orch


def test_a_stale_socket_is_unavailable_at_once(tmp_path: Path) -> None:
    paths = client.agent_paths(tmp_path)
    paths.folder.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(paths.socket))  # bound, never listening: what a SIGKILLed agent leaves
    stale.close()
    started = time.monotonic()
    with pytest.raises(client.AgentUnavailable, match="not answering"):
        client.call(paths, {"op": "hello"})
    assert time.monotonic() - started < client.CONNECT_TIMEOUT_S + 0.5


def _silent_server(path: Path, answer: bytes | None) -> socket.socket:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(1024)
        if answer is not None:
            conn.sendall(answer)
            conn.close()
        else:
            time.sleep(10)  # wedged: reads the request, never answers

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_a_silent_agent_times_out(tmp_path: Path) -> None:
    paths = client.agent_paths(tmp_path)
    paths.folder.mkdir()
    server = _silent_server(paths.socket, None)
    try:
        started = time.monotonic()
        with pytest.raises(client.AgentUnavailable, match=r"within 0\.3 s"):
            client.call(paths, {"op": "status"}, timeout=0.3)
        assert time.monotonic() - started < 1.0
    finally:
        server.close()


def test_progress_lines_then_the_reply(tmp_path: Path) -> None:
    paths = client.agent_paths(tmp_path)
    paths.folder.mkdir()
    server = _silent_server(paths.socket, b'{"progress": 10}\n{"progress": 50}\n{"ok": true}\n')
    seen: list[int] = []
    try:
        assert client.call(paths, {"op": "sync.start"}, progress=seen.append) == {"ok": True}
        assert seen == [10, 50]
    finally:
        server.close()


def test_a_dropped_request_is_said(tmp_path: Path) -> None:
    paths = client.agent_paths(tmp_path)
    paths.folder.mkdir()
    server = _silent_server(paths.socket, b"")
    try:
        with pytest.raises(
            client.AgentUnavailable,
            match="without an answer, after it got the request: it may have run",
        ):
            client.call(paths, {"op": "hello"})
    finally:
        server.close()


def test_a_deep_home_gets_a_short_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 120)
    paths = client.agent_paths(deep)
    assert len(str(paths.socket)) <= 104 and paths.folder == deep / "agent"


def test_status_with_a_wedged_agent_says_so_and_answers_anyway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    project = tmp_path / "proj"
    project.mkdir()
    paths = client.agent_paths(home)
    paths.folder.mkdir(parents=True)
    lock = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # an "agent" holds the lock but never answers
    server = _silent_server(paths.socket, None)
    monkeypatch.setenv("ORCH_HOME", str(home))
    try:
        started = time.monotonic()
        out = run_orch("status", cwd=project, env={"ORCH_AGENT_TIMEOUT_S": "1"})
        assert out.returncode == 0, out.stderr
        assert "orch agent did not answer" in out.stderr and "local" in out.stdout
        assert time.monotonic() - started < 8
    finally:
        server.close()
        os.close(lock)


def test_status_starts_no_agent_when_none_is_wanted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_HOME", str(tmp_path / "home"))
    (tmp_path / "proj").mkdir()
    out = run_orch("status", cwd=tmp_path / "proj")
    assert out.returncode == 0, out.stderr
    assert not client.alive(client.agent_paths(tmp_path / "home"))
    assert not (tmp_path / "home" / "agent" / "state.json").exists()


async def test_a_follow_goes_on_from_the_last_offset_after_the_agent_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`follow_log` against a stand-in agent that dies after two chunks: the next one is
    asked for the byte after them and its text follows, nothing repeated."""
    import asyncio
    import json

    paths = client.AgentPaths(tmp_path)
    paths.folder.mkdir()
    asked: list[dict] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.append(json.loads(await reader.readline()))
        if len(asked) == 1:  # the first agent: two chunks, then it is gone (no "end")
            events = [{"event": "log", "text": "a\n", "offset": 2}]
            events += [{"event": "log", "text": "bb\n", "offset": 5}]
        else:
            events = [{"event": "log", "text": "c\n", "offset": 7}, {"event": "end"}]
        for event in events:
            writer.write((json.dumps(event) + "\n").encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, str(paths.socket))
    monkeypatch.setattr(client, "ensure", lambda layout: (paths, {}))
    try:
        request = agent_calls.follow_request("/p", "job", 10, None, archived=True)
        got = [t async for t in agent_calls.follow_log(None, request, 5.0)]
    finally:
        server.close()
    assert got == ["a\n", "bb\n", "c\n"]
    assert [r.get("offset") for r in asked] == [None, 5]
    assert asked[1]["tail"] == 10 and asked[1]["archived"]  # (tail unused once there is one)


async def test_a_follow_without_offsets_is_not_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    paths = client.AgentPaths(tmp_path)
    paths.folder.mkdir()
    calls = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        calls.append(await reader.readline())
        writer.write(b'{"event": "log", "text": "cloudwatch\\n"}\n')  # no offset
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, str(paths.socket))
    monkeypatch.setattr(client, "ensure", lambda layout: (paths, {}))
    got: list[str] = []
    try:
        with pytest.raises(client.AgentUnavailable, match="following job job"):
            async for text in agent_calls.follow_log(
                None, agent_calls.follow_request("/p", "job", None, None), 5.0
            ):
                got.append(text)
    finally:
        server.close()
    assert got == ["cloudwatch\n"] and len(calls) == 1  # shown once, never asked again


def test_status_with_other_settings_than_the_agents_is_read_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`AWS_PROFILE=other orch status` is not the agent's view: the agent (started with this
    test's settings) answers `env_differs`, and the CLI reads the status itself."""
    from tests.helpers import run_orch_checked, stop_pid

    home = tmp_path / "home"
    project = tmp_path / "proj"
    project.mkdir()
    monkeypatch.setenv("ORCH_HOME", str(home))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    paths, info = client.ensure(home)
    try:
        same, heavy = run_orch_checked("status", cwd=project)
        assert same.returncode == 0 and heavy == [], (same.stderr, heavy)  # the agent's answer
        other, heavy = run_orch_checked("status", cwd=project, env={"AWS_PROFILE": "elsewhere"})
        assert other.returncode == 0, other.stderr
        assert "pydantic" in heavy  # read in this process, not asked of the agent
        assert (other.stdout, other.stderr) == (same.stdout, same.stderr)
        asked = {"op": "status", "cwd": str(project), "machine": None, "env": "0" * 16}
        assert client.call(paths, asked)["env_differs"]
        assert client.agent_pid(paths) == info["pid"]  # neither replaced nor restarted
    finally:
        stop_pid(int(info["pid"]))
