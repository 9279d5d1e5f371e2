"""The machine picker's overview: statuses read side by side, a slow or failing machine
becomes an "unknown" entry saying why instead of holding up or hiding the others."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sidecar.errors import OrchError
from sidecar.layout import Layout
from sidecar.machines.base import Capabilities, MachineInfo, Provider, SSHTarget
from sidecar.machines.overview import statuses


class _Probe(Provider):
    kind = "probe"
    capabilities = Capabilities(has_cost=True)

    def __init__(self, name: str, delay: float = 0.0, error: OrchError | None = None) -> None:
        super().__init__(name, None, Layout.from_env(), "proj")
        self.delay, self.error = delay, error

    async def status(self) -> MachineInfo:
        await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        return MachineInfo(name=self.name, kind=self.kind, state="running", price_per_hour=0.5)

    async def up(self, progress: object = None) -> MachineInfo:
        raise NotImplementedError

    async def down(self) -> MachineInfo:
        raise NotImplementedError

    async def ssh_target(self) -> SSHTarget:
        raise NotImplementedError


def test_statuses_run_side_by_side_and_failures_say_why(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ORCH_HOME", str(tmp_path))
    providers = [
        _Probe("a", delay=0.2),
        _Probe("b", delay=0.2),
        _Probe("slow", delay=30),
        _Probe("broken", error=OrchError("no credentials", hint="set AWS_PROFILE")),
    ]
    started = time.monotonic()
    infos = asyncio.run(statuses(providers, timeout_s=0.5))
    took = time.monotonic() - started
    assert took < 1.5  # concurrent (a and b together), and the slow one cut at the timeout
    assert [i.name for i in infos] == ["a", "b", "slow", "broken"]
    assert [i.state for i in infos] == ["running", "running", "unknown", "unknown"]
    assert infos[0].price_per_hour == 0.5
    assert "no answer within" in (infos[2].detail or "")
    assert infos[3].detail == "no credentials (set AWS_PROFILE)"
    assert all(i.capabilities.has_cost for i in infos)  # the kind's capabilities ride along
