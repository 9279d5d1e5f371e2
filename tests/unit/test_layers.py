"""The layer contract (pyproject.toml, `lint-imports`) holds, and it does fail on a violation:
a copy of the tree where a service imports the facade is reported as broken."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    root.mkdir()
    shutil.copy(REPO / "pyproject.toml", root)
    for pkg in ("sidecar", "remote_config"):
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_the_contract_is_kept_and_a_service_importing_the_facade_breaks_it(
    tmp_path: Path,
) -> None:
    root = _copy(tmp_path)
    kept = _lint(root)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "0 broken" in kept.stdout

    service = root / "sidecar" / "jobs" / "tmux.py"
    service.write_text(service.read_text() + "\nfrom sidecar.app import Orchestrator  # noqa\n")
    face = root / "sidecar" / "cli" / "sync_cmds.py"
    face.write_text(face.read_text() + "\nfrom sidecar.sync import control  # noqa\n")
    # The facade's areas (sidecar/facade/) count as the facade: reached only as sidecar.app.
    area_user = root / "sidecar" / "sync" / "control.py"
    area_user.write_text(area_user.read_text() + "\nfrom sidecar.facade import jobs  # noqa\n")
    face_area = root / "sidecar" / "cli" / "output.py"
    face_area.write_text(face_area.read_text() + "\nfrom sidecar.facade import core  # noqa\n")
    broken = _lint(root)
    assert broken.returncode != 0
    assert "Services never reach back into the facade or the faces BROKEN" in broken.stdout
    assert "The faces use only the facade and the result types it exports BROKEN" in broken.stdout
    assert "sidecar.jobs.tmux -> sidecar.app" in broken.stdout
    assert "sidecar.sync is not allowed to import sidecar.facade:" in broken.stdout
    assert "sidecar.cli is not allowed to import sidecar.facade:" in broken.stdout
