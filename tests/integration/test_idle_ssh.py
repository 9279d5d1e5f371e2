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
