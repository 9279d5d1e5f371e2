"""A machine of kind "ssh" against a real OpenSSH sshd on 127.0.0.1 (through the pool)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.app import Orchestrator
from sidecar.errors import HostKeyMismatch
from tests.helpers import Sshd

pytestmark = pytest.mark.integration


async def test_pool_runs_commands_on_real_sshd(sshd: Sshd, project: Path, orch_home: Path) -> None:
    (project / "orch.toml").write_text('[project]\ndefault_machine = "box"\n' + sshd.machine_toml())
    orch = Orchestrator(cwd=project)
    try:
        info = await orch.up()
        assert info.state == "running"
        target = await orch.ssh_target()
        result = await orch.pool.run(target, 'echo "$USER"; exit 7')
        assert result.exit_status == 7
        assert result.stdout.strip() == sshd.user
        # The same connection serves the next command.
        conn = await orch.pool.connection(target)
        await orch.pool.run(target, "true")
        assert await orch.pool.connection(target) is conn
    finally:
        await orch.close()


async def test_changed_host_key_is_refused(sshd: Sshd, project: Path, orch_home: Path) -> None:
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEc4k5mK0f5uQj5C8a1m6yU9Zq4b1n0yVv6l0l3cF0Fh"
    toml = sshd.machine_toml().replace(sshd.host_public_key, other)
    (project / "orch.toml").write_text('[project]\ndefault_machine = "box"\n' + toml)
    orch = Orchestrator(cwd=project)
    try:
        target = await orch.ssh_target()
        with pytest.raises(HostKeyMismatch) as caught:
            await orch.pool.run(target, "true")
        assert "re-pin" in (caught.value.hint or "")
    finally:
        await orch.close()
