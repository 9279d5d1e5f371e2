"""Session lifetimes (`ttl`) end to end on the embedded local machine, with a short check
interval: the lifetime stops a machine that idle stop alone would keep for an hour; with a
job running it warns and waits (the job's end lets it stop) unless `ttl_hard = true`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sidecar.app import Orchestrator
from tests.helpers import stop_pid
from tests.integration.test_idle_local import _cmdline, idle_log, machine_home, wait_stopped

pytestmark = pytest.mark.integration

INTERVAL = 0.3
TTL = 2.0
SLACK = 2.5

Start = Callable[[str], Awaitable[Orchestrator]]


@pytest.fixture
async def start(
    orch_home: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Start]:
    monkeypatch.setenv("ORCH_IDLE_INTERVAL", str(INTERVAL))
    monkeypatch.setenv("ORCH_IDLE_DISABLE", "cpu,gpu")  # a shared test machine: no busy CPU
    made: list[Orchestrator] = []

    async def up(extra: str) -> Orchestrator:
        (project / "orch.toml").write_text(
            f'[machines.local]\nkind = "local"\nidle_stop = "1h"\nttl = "{TTL:g}s"\n{extra}'
        )
        orch = Orchestrator(cwd=project)
        made.append(orch)
        assert (await orch.up()).state == "running"
        return orch

    yield up
    for orch in made:
        with contextlib.suppress(Exception):
            await orch.jobs_stop("busy")
        await orch.close()
        await orch.down(force=True)
        pid_file = machine_home(orch) / ".orch" / "idle" / "agent.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            if b"orch_idle_agent" in _cmdline(pid):
                stop_pid(pid)


async def test_ttl_stops_an_idle_machine_idle_stop_would_keep(start: Start) -> None:
    orch = await start("")
    boot = time.time() - ((await orch.machine_status()).uptime_s or 0.0)
    await wait_stopped(orch, TTL + INTERVAL + SLACK)
    stops = [e for e in idle_log(orch) if e["action"] == "stop"]
    assert len(stops) == 1 and "lifetime" in str(stops[0]["reason"]), stops
    # not before the lifetime is over (counted from the machine's start), and on time
    assert TTL - 0.2 <= float(stops[0]["t"]) - boot <= TTL + INTERVAL + SLACK  # type: ignore[arg-type]


async def test_ttl_with_a_running_job_warns_and_waits_for_it(start: Start) -> None:
    orch = await start("")
    # The job ends by itself when told (`orch stop` would race the stop that follows).
    until_told = "while [ ! -f ~/done ]; do sleep 0.1; done"
    await orch.jobs_run("busy", until_told, snapshot=False)
    await asyncio.sleep(TTL + INTERVAL * 3)
    status = await orch.status()
    assert status.machine.state == "running"
    assert status.idle is not None and status.idle.action == "warn", status.idle
    assert status.idle.rule == "ttl" and "waiting for 1 running job" in status.idle.line
    (machine_home(orch) / "done").write_text("")  # the job ends: the lifetime is over
    await wait_stopped(orch, INTERVAL * 3 + SLACK)


async def test_ttl_hard_stops_under_a_running_job(start: Start) -> None:
    orch = await start("ttl_hard = true\n")
    await orch.jobs_run("busy", "sleep 60", snapshot=False)
    await wait_stopped(orch, TTL + INTERVAL + SLACK)
    stops = [e for e in idle_log(orch) if e["action"] == "stop"]
    assert len(stops) == 1 and stops[0]["signals"]["jobs"] == 1, stops  # type: ignore[index]
