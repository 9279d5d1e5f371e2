"""Idle stop on an `ssh` machine (real OpenSSH sshd): the agent runs there but only reports."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from sidecar.app import Orchestrator
from tests.helpers import Sshd, run_orch

pytestmark = pytest.mark.integration


async def test_ssh_machine_is_reported_idle_never_stopped(
    sshd: Sshd, project: Path, orch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_IDLE_INTERVAL", "0.3")
    # The test machine's CPU is shared with other test runs: leave the CPU probe out here
    # (it is covered on the local machine, which counts only its own sessions).
    monkeypatch.setenv("ORCH_IDLE_DISABLE", "cpu")
    toml = sshd.machine_toml() + 'idle_stop = "3s"\n'
    (project / "orch.toml").write_text('[project]\ndefault_machine = "box"\n' + toml)
    orch = Orchestrator(cwd=project)
    target = None
    try:
        await orch.up()
        target = await orch.ssh_target()
        await asyncio.sleep(4.5)
        status = await orch.status()
        assert status.idle is not None, status
        assert status.idle.stop_hook == "report"
        assert status.idle.action == "stop", status.idle
        assert status.idle.line.endswith("would stop now (report only)")
        assert (await orch.pool.run(target, "true")).exit_status == 0  # still up
        log = await orch.pool.run(target, "cat ~/.orch/idle.log")
        entries = [json.loads(line) for line in log.stdout.splitlines()]
        assert [e["action"] for e in entries].count("report") == 1
        # A running job makes it active again; the CLI shows it.
        await orch.jobs_run("busy", "sleep 30", snapshot=False)
        await asyncio.sleep(1.0)
        shown = run_orch("status", cwd=project)
        assert "idle: active: 1 job(s) running" in shown.stdout, shown
        await orch.jobs_stop("busy")
    finally:
        if target is not None:
            # Clean only what this test made: its job (and logs) and the agent.
            with contextlib.suppress(Exception):
                await orch.jobs_rm("busy", purge=True)
            await orch.pool.run(
                target, 'kill "$(cat ~/.orch/idle/agent.pid)" 2>/dev/null; rm -rf ~/.orch/idle'
            )
        await orch.close()


# A stand-in for VS Code's remote server: started over its own SSH session (as Remote-SSH
# does) from ~/.vscode-server, it streams bytes back over that session while ~/traffic says
# "on", and keeps the session open but quiet otherwise (an idle editor window).
VSCODE_LIKE = r"""
import os, sys, time
open(os.path.expanduser("~/vscode-like.pid"), "w").write(str(os.getpid()))
while True:
    try:
        on = open(os.path.expanduser("~/traffic")).read().strip() == "on"
    except OSError:
        on = False
    if on:
        sys.stdout.buffer.write(b"x" * 100_000)
        sys.stdout.flush()
    time.sleep(0.1)
"""


async def test_a_vscode_like_session_with_traffic_keeps_it_active(
    sshd: Sshd, project: Path, orch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's traffic keeps the machine active past idle_stop; the same session open
    but quiet does not (the ssh machine reports "would stop")."""
    monkeypatch.setenv("ORCH_IDLE_INTERVAL", "0.3")
    monkeypatch.setenv("ORCH_IDLE_DISABLE", "cpu")
    toml = sshd.machine_toml() + 'idle_stop = "3s"\n'
    (project / "orch.toml").write_text('[project]\ndefault_machine = "box"\n' + toml)
    orch = Orchestrator(cwd=project)
    target = None
    session = None
    try:
        await orch.up()
        target = await orch.ssh_target()
        server = "~/.vscode-server/bin/orch-test/server.py"
        put = (
            f"mkdir -p ~/.vscode-server/bin/orch-test && echo on > ~/traffic && "
            f"cat > {server} <<'PY'\n{VSCODE_LIKE}\nPY\n"
        )
        assert (await orch.pool.run(target, put)).exit_status == 0
        argv = await orch.ssh_argv(None, ["python3", server])
        session = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
        )
        received = 0

        async def drain() -> None:
            nonlocal received
            assert session is not None and session.stdout is not None
            while chunk := await session.stdout.read(65536):
                received += len(chunk)

        reader = asyncio.create_task(drain())
        deadline = asyncio.get_running_loop().time() + 4.5  # past idle_stop
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)
            status = await orch.idle_status()
            if status is not None and received:
                assert status.action == "keep", status
        assert received > 1_000_000  # the traffic went over the SSH session
        status = await orch.idle_status()
        assert status is not None and "vscode traffic" in status.reason, status
        # Quiet, the session still open: idle counts again and the machine would stop.
        await orch.pool.run(target, "echo off > ~/traffic")
        for _ in range(40):
            await asyncio.sleep(0.25)
            status = await orch.idle_status()
            if status is not None and status.action == "stop":
                break
        assert status is not None and status.action == "stop", status
        assert session.returncode is None  # the editor's session stayed up throughout
        reader.cancel()
    finally:
        if target is not None:
            await orch.pool.run(
                target,
                'kill "$(cat ~/vscode-like.pid)" "$(cat ~/.orch/idle/agent.pid)" 2>/dev/null; '
                "rm -rf ~/.orch/idle ~/.vscode-server ~/traffic ~/vscode-like.pid",
            )
        if session is not None and session.returncode is None:
            session.terminate()
            await session.wait()
        await orch.close()
