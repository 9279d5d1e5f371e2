"""The status watch (`sidecar.watch`) and the agent client's subscription stream: pushes only
on change, a poke reads at once, a read that never returns is given up as "unreachable", and
a subscription to a silent or vanished agent ends, bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from sidecar import agent_calls, agent_client
from sidecar.watch import StatusWatch, changed

pytestmark = pytest.mark.timeout(20)


def status(state: str = "running", uptime: int = 1, jobs: list[Any] | None = None) -> dict:
    return {
        "machine": {"name": "m", "kind": "local", "state": state, "uptime_s": uptime},
        "jobs": jobs or [],
        "sync": {},
        "ports": [],
        "idle": None,
        "cost": None,
    }


def test_uptime_alone_is_no_change_while_idle_but_is_while_busy() -> None:
    assert not changed(status(uptime=1), status(uptime=2))
    running = [{"name": "j", "state": "running"}]
    assert changed(status(uptime=1, jobs=running), status(uptime=2, jobs=running))
    assert changed(status(), status(state="stopped"))
    assert changed(None, status())


async def test_pushes_on_change_poke_reads_at_once_and_a_hung_read_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCH_STATUS_IDLE_S", "60")
    monkeypatch.setenv("ORCH_STATUS_READ_TIMEOUT_S", "0.1")
    answers: list[dict | None] = [status(), status(uptime=9), status(state="stopped"), None]
    reads = 0

    async def read() -> dict:
        nonlocal reads
        reads += 1
        answer = answers.pop(0) if answers else None
        if answer is None:
            await asyncio.Event().wait()  # a machine that keeps the connection and says nothing
        assert answer is not None
        return answer

    watch = StatusWatch(read, name="proj@m")
    pushed: list[dict] = []
    watch.listeners.append(pushed.append)
    watch.start()
    try:
        for expected in (1, 2, 3):
            while reads < expected:
                await asyncio.sleep(0.01)
            watch.poke()  # without it the next read would be a minute away
        await asyncio.sleep(0.05)
        assert [p["machine"]["state"] for p in pushed] == ["running", "stopped"]  # uptime: none
        began = asyncio.get_running_loop().time()
        hung = await watch.current(fresh=True)
        assert asyncio.get_running_loop().time() - began < 1.0
        assert hung["machine"]["state"] == "unknown"
        assert hung["machine"]["detail"].startswith("unreachable: no answer within 0.2 s")
        assert pushed[-1] == hung  # pushed once, by whichever read gave up first
    finally:
        await watch.stop()


async def test_a_subscription_ends_on_a_silent_or_vanished_agent(tmp_path: Path) -> None:
    paths = agent_client.AgentPaths(tmp_path)
    paths.folder.mkdir()
    silent = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = json.loads(await reader.readline())
        writer.write(json.dumps({"event": "status", "status": request["cwd"]}).encode() + b"\n")
        await writer.drain()
        if silent.is_set():
            await asyncio.sleep(5)  # says nothing more, not even its heartbeat
        writer.close()

    server = await asyncio.start_unix_server(serve, path=str(paths.socket))
    try:
        got = [e async for e in agent_calls.subscribe(paths, {"cwd": "a"}, silence_s=1)]
        assert got == [{"event": "status", "status": "a"}]  # then the agent hung up: the end
        silent.set()
        began = asyncio.get_running_loop().time()
        with pytest.raises(agent_client.AgentUnavailable, match=r"silent for 0\.2 s"):
            async for _ in agent_calls.subscribe(paths, {"cwd": "b"}, silence_s=0.2):
                pass
        assert asyncio.get_running_loop().time() - began < 1.0
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
    with pytest.raises(agent_client.AgentUnavailable, match="not answering"):
        async for _ in agent_calls.subscribe(paths, {"cwd": "c"}, silence_s=1):
            pass
