"""`orch status` and `orch down --delete` on a codespace, through the real CLI process,
against the validating GitHub API stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

pytest_plugins = ["tests.codespaces_api.conftest"]

TOML = (
    '[project]\nname = "proj"\ndefault_machine = "cs"\n'
    '[machines.cs]\nkind = "codespaces"\nrepository = "octo/proj"\n'
)


def _orch(project: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli.main", *args],
        cwd=project, capture_output=True, text=True, timeout=60, input=stdin,
        env={**os.environ, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def _codespace(github_api: Any, **git: Any) -> str:
    cs = github_api._create("octo/proj", {"display_name": "orch proj cs"})
    cs["state"] = "Available"
    cs["git_status"].update(git)
    return str(cs["name"])


def test_status_shows_state_type_timeout_and_price(
    github_api: Any, project: Path, orch_home: Path
) -> None:
    (project / "orch.toml").write_text(TOML)
    name = _codespace(github_api)
    done = _orch(project, "status")
    assert done.returncode == 0, done.stderr
    assert name in done.stdout and "running" in done.stdout
    assert "type standardLinux32gb" in done.stdout
    assert "idle timeout 30 min" in done.stdout and "$0.36/h" in done.stdout
    assert github_api.TOKEN not in done.stdout + done.stderr


def test_delete_needs_confirmation_and_warns_about_unpushed_work(
    github_api: Any, project: Path, orch_home: Path
) -> None:
    (project / "orch.toml").write_text(TOML)
    name = _codespace(github_api, has_unpushed_changes=True, ahead=3, ref="feature")
    refused = _orch(project, "down", "--delete")
    assert refused.returncode != 0
    assert "unpushed commits on feature (3 ahead)" in refused.stderr
    assert "--yes" in refused.stderr
    assert name in github_api.codespaces  # nothing was deleted
    done = _orch(project, "down", "--delete", "--yes")
    assert done.returncode == 0, done.stderr
    assert github_api.codespaces == {}
    assert f"deleted codespace {name}" in done.stdout


def test_delete_on_a_kind_that_cannot_is_refused(project: Path, orch_home: Path) -> None:
    done = _orch(project, "down", "--delete", "--yes")
    assert done.returncode != 0 and "cannot be deleted" in done.stderr


def test_run_warns_when_a_job_outlives_the_idle_timeout(
    github_api: Any, project: Path, orch_home: Path
) -> None:
    (project / "orch.toml").write_text(TOML + "idle_timeout_minutes = 30\n")
    done = _orch(project, "run", "train", "--expect", "3h", "--", "python3", "train.py")
    # The warning comes before the job is started (which fails here: the codespace is not up).
    assert "warning: job expected to run 180 min" in done.stderr
    assert "EC2" in done.stderr
    bad = _orch(project, "run", "train", "--expect", "soon", "--", "true")
    assert bad.returncode != 0 and "not a duration" in bad.stderr
