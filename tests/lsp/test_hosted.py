"""The language server hosted in the orch agent, behind the standard-library bridge that
`python -m sidecar` is (the real bridge, the real agent, no machine needed).

Two windows (two bridges) share one agent and get the same status pushes; one window's
`exit` ends its bridge and nothing else; the bridge loads none of the heavy modules; a
command stuck on a silent machine fails at its bound while the agent answers the rest; a
SIGKILLed agent is replaced under a window that goes on (a request in flight gets an error,
the next one an answer, on the same stdio connection, and a followed job log goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient

from sidecar import agent_client
from tests.conftest import _kill_tmux_servers
from tests.lsp.helpers import _plain, module_home

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.random_order(disabled=True)]

HOME = module_home("hosted")
PROJECT = HOME / "project"
ORCH_HOME = HOME / "orch-home"
HEAVY = ("pydantic", "pydantic_core", "pygls", "lsprotocol", "cattrs", "asyncssh", "asyncio")
# Runs the bridge as `python -m sidecar` does and writes, at its exit, which heavy modules
# it had loaded (the bridge must have none).
PROBE = (
    "import atexit, runpy, sys\n"
    "out = sys.argv[1]\n"
    "def seen():\n"
    f"    heavy = {HEAVY!r}\n"
    "    found = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
    "    open(out, 'w').write(' '.join(found))\n"
    "atexit.register(seen)\n"
    "sys.argv = sys.argv[:1]\n"
    "runpy.run_module('sidecar', run_name='__main__')\n"
)


@pytest.fixture(scope="module", autouse=True)
def home() -> Iterator[None]:
    PROJECT.mkdir(parents=True, exist_ok=True)
    (PROJECT / "orch.toml").unlink(missing_ok=True)
    yield
    pid = agent_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
    _kill_tmux_servers(HOME)  # a job a failed test left running


BOUND_S = 3.0  # every command's bound in the agent (ORCH_LSP_TIMEOUT_S), short for the test


def env() -> dict[str, str]:
    return {
        **os.environ,
        "ORCH_HOME": str(ORCH_HOME),
        "ORCH_STATUS_IDLE_S": "60",
        "ORCH_LSP_TIMEOUT_S": str(BOUND_S),
    }


def agent_pid() -> int | None:
    return agent_client.agent_pid(agent_client.agent_paths(ORCH_HOME))


def agent_info() -> dict[str, Any]:
    return agent_client.call(agent_client.agent_paths(ORCH_HOME), {"op": "info"})


class Window:
    """A VS Code window: a pygls client over `python -m sidecar` (the bridge)."""

    def __init__(self, name: str) -> None:
        self.client = LanguageClient(name, "1")
        self.statuses: list[dict[str, Any]] = []
        self.client.feature("orch/status")(lambda p: self.statuses.append(_plain(p)))
        self.logs: list[str] = []
        self.client.feature("orch/log")(lambda p: self.logs.append(_plain(p)["text"]))
        self.probe = HOME / f"{name}.modules"

    async def open(
        self, client_name: str = "pytest", more_env: dict[str, str] | None = None
    ) -> Window:
        self.probe.unlink(missing_ok=True)
        await self.client.start_io(
            sys.executable,
            "-c",
            PROBE,
            str(self.probe),
            cwd=str(PROJECT),
            env={**env(), **(more_env or {})},
        )
        self.initialize_result = await self.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                root_uri=PROJECT.as_uri(),
                initialization_options={"clientName": client_name},
            )
        )
        self.client.initialized(types.InitializedParams())
        return self

    @property
    def pid(self) -> int:
        assert self.client._server is not None
        return self.client._server.pid

    async def run(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        params = types.ExecuteCommandParams(command=command, arguments=[arguments or {}])
        return await asyncio.wait_for(self.client.workspace_execute_command_async(params), 20)

    async def until(self, test: Any, timeout: float = 10.0) -> dict[str, Any]:
        began = time.monotonic()
        while True:
            for status in self.statuses:
                if test(status):
                    return status
            assert time.monotonic() - began < timeout, self.statuses[-1:]
            await asyncio.sleep(0.05)

    async def close(self) -> int | None:
        """shutdown + exit, as VS Code does; the bridge's exit code."""
        await asyncio.wait_for(self.client.shutdown_async(None), 10)
        self.client.exit(None)
        assert self.client._server is not None
        code = await asyncio.wait_for(self.client._server.wait(), 10)
        await self.client.stop()
        return code


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def windows() -> AsyncIterator[tuple[Window, Window]]:
    first = await Window("first").open()
    second = await Window("second").open()
    yield first, second
    for window in (first, second):
        if not window.client.stopped:
            await window.close()


def configured(status: dict[str, Any]) -> bool:
    return bool(status["config"]["file"])


async def test_two_windows_share_one_agent_and_get_the_same_pushes(
    windows: tuple[Window, Window],
) -> None:
    first, second = windows
    await first.until(lambda s: not configured(s))
    await second.until(lambda s: not configured(s))
    info = agent_info()
    assert info["windows"] == 2 and info["watched"] == 1  # one watch for both windows
    # A command in one window (it writes orch.toml) is pushed to both by the one watch.
    began = time.monotonic()
    created = await first.run("orch.config.init")
    assert created["created"] is True
    pushed = [await w.until(configured, timeout=5) for w in (first, second)]
    assert pushed[0] == pushed[1] and pushed[0]["config"]["file"] == created["path"]
    assert time.monotonic() - began < 5
    assert (await second.run("orch.status"))["config"]["file"] == created["path"]


async def test_the_bridge_loads_nothing_heavy(windows: tuple[Window, Window]) -> None:
    first, _ = windows
    assert await first.run("orch.machine.status") is not None  # commands ran through it
    maps = Path(f"/proc/{first.pid}/maps").read_text()
    assert "pydantic_core" not in maps and "cryptography" not in maps
    assert "pydantic_core" in Path(f"/proc/{agent_pid()}/maps").read_text()  # seen where loaded
    rss_kb = int(Path(f"/proc/{first.pid}/status").read_text().split("VmRSS:")[1].split()[0])
    assert rss_kb < 30_000, rss_kb  # ~10 MB: a bare interpreter and the bridge


async def test_a_window_with_other_settings_runs_its_own_server(
    windows: tuple[Window, Window],
) -> None:
    """The agent acts with the settings it was started with (AWS_*, ORCH_*, GITHUB_*…): a
    window started with others (here another AWS profile) must not act with the agent's
    account, so the agent declines to host it and its bridge runs the server itself, without
    the agent, as `orch` does then."""
    first, _ = windows
    assert await first.run("orch.machine.status") is not None  # the agent runs
    hosted = agent_info()["windows"]
    other = await Window("other-settings").open(more_env={"AWS_PROFILE": "another-account"})
    try:
        status = await other.run("orch.status", {"fresh": True})
        assert status["machine"]["name"] == "local"  # it answers
        assert agent_info()["windows"] == hosted  # not one of the agent's
        maps = Path(f"/proc/{other.pid}/maps").read_text()
        assert "pydantic_core" in maps  # the server runs in the window's own process
    finally:
        assert await other.close() == 0
    assert "pydantic" in other.probe.read_text()


async def test_a_window_that_exits_stops_nothing_else(windows: tuple[Window, Window]) -> None:
    first, second = windows
    agent = agent_pid()
    assert await first.close() == 0  # shutdown then exit: 0, as LSP says
    assert first.probe.read_text() == ""  # the bridge loaded none of HEAVY, to its end
    began = time.monotonic()
    while agent_info()["windows"] != 1:
        assert time.monotonic() - began < 5
        await asyncio.sleep(0.05)
    assert agent_pid() == agent
    assert configured(await second.run("orch.status", {"fresh": True}))


async def test_a_killed_bridge_frees_its_window_in_the_agent(
    windows: tuple[Window, Window],
) -> None:
    third = await Window("third").open()
    await third.until(lambda s: True)
    assert agent_info()["windows"] == 2
    os.kill(third.pid, signal.SIGKILL)  # the window's process dies without a word
    began = time.monotonic()
    while agent_info()["windows"] != 1:
        assert time.monotonic() - began < 5
        await asyncio.sleep(0.05)
    with contextlib.suppress(Exception):
        await third.client.stop()


async def test_an_agent_that_hands_over_takes_the_window_along(
    windows: tuple[Window, Window],
) -> None:
    """A newer client replacing the agent (`shutdown`, keeping what it runs) closes the
    windows' connections; each bridge reconnects to the successor and goes on."""
    _, window = windows
    old = agent_pid()
    agent_client.call(agent_client.agent_paths(ORCH_HOME), {"op": "shutdown", "forget": False})
    began = time.monotonic()
    while agent_pid() in (None, old) or agent_info()["windows"] != 1:  # the bridge reconnects
        assert time.monotonic() - began < 10
        await asyncio.sleep(0.05)
    status = await window.run("orch.status", {"fresh": True})
    assert status["machine"]["name"] == "local"


@pytest.fixture(scope="module")
def mute() -> Iterator[None]:
    """A machine whose SSH port accepts and then says nothing: a jobs request hangs there."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    (PROJECT / "orch.toml").write_text(
        f'[machines.mute]\nkind = "ssh"\nhost = "127.0.0.1"\nport = {port}\nhost_key = "{key}"\n'
    )
    yield
    silent.close()


async def test_a_stuck_command_is_bounded_and_starves_nothing(
    windows: tuple[Window, Window], mute: None
) -> None:
    _, window = windows
    await window.run("orch.machine.select", {"machine": "mute"})
    await window.run("orch.machine.up")  # orch's client key; the host key pinned
    began = time.monotonic()
    stuck = asyncio.ensure_future(window.run("orch.jobs.status"))
    # Meanwhile the agent answers this window (and would any other) at once.
    assert (await window.run("orch.sync.status"))["machine"] == "mute"
    assert time.monotonic() - began < 1.0
    with pytest.raises(JsonRpcException) as caught:
        await stuck
    assert f"did not finish within {BOUND_S:g} s" in caught.value.message
    assert BOUND_S <= time.monotonic() - began < BOUND_S + 2


async def test_kill_9_of_the_agent_the_window_goes_on(
    windows: tuple[Window, Window], mute: None
) -> None:
    _, window = windows
    old = agent_pid()
    assert old is not None
    hanging = asyncio.ensure_future(window.run("orch.jobs.status"))  # on the mute machine
    await asyncio.sleep(0.5)
    assert not hanging.done()
    os.kill(old, signal.SIGKILL)
    began = time.monotonic()
    with pytest.raises(JsonRpcException) as caught:  # answered, not left hanging
        await hanging
    assert "stopped while running" in caught.value.message
    assert time.monotonic() - began < 2
    # The same stdio connection goes on, still on the machine the window selected.
    assert (await window.run("orch.sync.status"))["machine"] == "mute"
    await window.run("orch.machine.select", {"machine": ""})
    status = await window.run("orch.status", {"fresh": True})
    assert status["machine"]["name"] == "local" and configured(status)
    new = agent_pid()
    assert new not in (None, old)
    assert agent_info()["windows"] == 1  # the window was replayed into the new agent
    assert time.monotonic() - began < 10


async def test_a_followed_log_goes_on_in_a_new_agent(windows: tuple[Window, Window]) -> None:
    """The job runs on the local machine (its own process: it outlives the agent); the
    window follows its log, the agent is killed, and the lines written after the new agent
    came up still reach the window, none twice."""
    _, window = windows
    gate = HOME / "gate"
    gate.unlink(missing_ok=True)
    command = f"echo first-line; while [ ! -e {gate} ]; do sleep 0.05; done; echo second-line"
    try:
        await window.run("orch.machine.up")
        await window.run("orch.jobs.run", {"name": "tail", "command": command + "; sleep 30"})
        await window.run("orch.jobs.follow", {"name": "tail"})
        began = time.monotonic()
        while "first-line" not in "".join(window.logs):
            assert time.monotonic() - began < 10, window.logs
            await asyncio.sleep(0.05)
        old = agent_pid()
        assert old is not None
        os.kill(old, signal.SIGKILL)
        while agent_pid() in (None, old) or agent_info()["windows"] != 1:
            assert time.monotonic() - began < 15
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the replayed follow is reading the log
        gate.touch()
        while "second-line" not in "".join(window.logs):
            assert time.monotonic() - began < 20, window.logs
            await asyncio.sleep(0.05)
        assert "".join(window.logs).count("first-line") == 1
    finally:
        with contextlib.suppress(Exception):
            await window.run("orch.jobs.stop", {"name": "tail"})
        with contextlib.suppress(Exception):
            await window.run("orch.machine.down", {"force": True})


def stop_the_agent() -> None:
    pid = agent_pid()
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    began = time.monotonic()
    while agent_client.alive(agent_client.agent_paths(ORCH_HOME)):
        assert time.monotonic() - began < 15
        time.sleep(0.05)


async def test_with_no_agent_initialize_is_answered_from_the_agents_last_answer(
    windows: tuple[Window, Window],
) -> None:
    """The bridge keeps the agent's `initialize` answer; with no agent running it answers a
    matching `initialize` at once (marked here, to tell it from the agent's), starts the agent,
    and the window then works as any other. Other initialization options: no shortcut."""
    kept_file = agent_client.agent_paths(ORCH_HOME).folder / "lsp-initialize.json"
    kept = json.loads(kept_file.read_text())  # written by the windows before
    assert kept_file.stat().st_mode & 0o077 == 0
    real_version = kept["result"]["serverInfo"]["version"]
    for window in windows:
        if not window.client.stopped:
            await window.close()
    stop_the_agent()
    kept["result"]["serverInfo"]["version"] = "the-kept-answer"
    kept_file.write_text(json.dumps(kept))
    early = await Window("early").open()
    try:
        assert early.initialize_result.server_info is not None
        assert early.initialize_result.server_info.version == "the-kept-answer"
        assert configured(await early.run("orch.status", {"fresh": True}))  # the agent is up
        assert agent_info()["windows"] == 1
        # The agent's own answer (swallowed on the way) replaced the marked one.
        replaced = json.loads(kept_file.read_text())["result"]["serverInfo"]["version"]
        assert replaced == real_version
    finally:
        await early.close()
    stop_the_agent()
    kept_file.write_text(json.dumps(kept))  # marked again: must not be used this time
    other = await Window("other").open(client_name="another editor")
    try:
        assert other.initialize_result.server_info is not None
        assert other.initialize_result.server_info.version == real_version
        assert configured(await other.run("orch.status", {"fresh": True}))
    finally:
        await other.close()
