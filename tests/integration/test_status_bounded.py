"""A status read never stalls on a machine that keeps its connection open without answering.

The embedded local machine's server is frozen (SIGSTOP) while the pooled connection to it is
open: the kernel keeps the TCP connection up, nothing answers on it (what a read in flight
saw once when the idle agent stopped the machine, docs/idle.md). `orch status` then comes
back within its per-read bound, saying the machine is unreachable, and recovers once the
server runs again.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)


async def test_a_frozen_machine_is_unreachable_within_the_bound(
    local_orch: object, orch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sidecar.app import Orchestrator

    assert isinstance(local_orch, Orchestrator)
    monkeypatch.setenv("ORCH_STATUS_READ_TIMEOUT_S", "1")
    first = await local_orch.status()
    assert first.machine.state == "running" and "unreachable" not in (first.machine.detail or "")
    pid = json.loads((orch_home / "machines" / "local" / "state.json").read_text())["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        frozen = await local_orch.status()
        took = time.monotonic() - began
        assert took < 4.5, took  # a few 1 s bounded reads, not a hang
        assert "jobs unavailable: unreachable" in (frozen.machine.detail or "")
    finally:
        os.kill(pid, signal.SIGCONT)
    again = await local_orch.status()
    assert again.machine.state == "running"
    assert "unreachable" not in (again.machine.detail or "")
