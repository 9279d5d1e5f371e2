"""Helpers for the language-server tests: send a command, collect `orch/status` pushes."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.conftest import _kill_tmux_servers

Status = dict[str, Any]

# Every module's folder made in this run, removed when the run ends (tests/conftest.py).
HOMES: list[Path] = []


def module_home(name: str) -> Path:
    """A new, empty folder for one test module's $ORCH_HOME, project and local machine.

    Made anew for every run: a folder named after the pid alone came back when the pid did,
    with an earlier run's jobs still on its local machine, and a finished job of the same
    name then showed up as this run's (a status "pushed" before the job even started)."""
    home = Path(tempfile.mkdtemp(prefix=f"orch-lsp-{name}-"))
    HOMES.append(home)
    return home


async def execute(
    client: LanguageClient,
    command: str,
    arguments: dict[str, Any] | None = None,
    *,
    token: str | None = None,
) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command=command,
            arguments=[arguments] if arguments is not None else [],
            work_done_token=token,
        )
    )


def status_notifications(client: LanguageClient) -> list[Status]:
    """Starts recording `orch/status` notifications on `client.statuses`."""
    received: list[Status] = []
    client.statuses = received  # type: ignore[attr-defined]

    @client.feature("orch/status")
    def on_status(params: Any) -> None:
        received.append(_plain(params))

    return received


def _plain(value: Any) -> Any:
    """pygls hands custom notifications over as attribute objects; turn them into dicts."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "__dict__"):
        return {k: _plain(v) for k, v in vars(value).items()}
    return value


async def wait_for_status(
    client: LanguageClient, test: Callable[[Status], bool], timeout: float = 10.0
) -> Status:
    """The first pushed status (old or new) for which `test` holds."""
    received: list[Status] = client.statuses  # type: ignore[attr-defined]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for status in received:
            if test(status):
                return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no orch/status matched in {timeout}s; got {received[-3:]}")
        await asyncio.sleep(0.05)


async def machine_down(client: LanguageClient, home: Path) -> None:
    """Leaves nothing running: the local machine and any tmux server under `home`."""
    with contextlib.suppress(Exception):
        await execute(client, "orch.machine.down", {})
    _kill_tmux_servers(home)
