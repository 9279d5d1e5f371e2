"""Commands that need no state start no orch agent (the real CLI, a fresh $ORCH_HOME)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_orch


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("logs", "--help"),
        ("logs", "--tail=x", "job"),  # a usage error of the fast path's words: the parser's
        ("config", "schema"),
        ("config", "show"),
    ],
)
def test_a_stateless_command_starts_no_agent(
    args: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("ORCH_HOME", str(home))
    done = run_orch(*args, cwd=tmp_path)
    assert done.returncode in (0, 2), done.stderr
    assert not (home / "agent").exists(), f"orch {' '.join(args)} started the agent"
