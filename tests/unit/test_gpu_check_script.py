"""scripts/gpu_check.sh outside a GPU machine: it measures nothing and says why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"


def run(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "result.json")],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")
def test_without_a_gpu_it_says_so_and_exits_0(tmp_path: Path) -> None:
    proc = run(tmp_path, dict(os.environ))
    assert proc.returncode == 0
    assert "needs a CUDA GPU" in proc.stderr and "nothing was measured" in proc.stderr
    assert not (tmp_path / "result.json").exists()


def test_a_gpu_that_python_cannot_use_is_a_failure(tmp_path: Path) -> None:
    # nvidia-smi lists a GPU, but the chosen Python has no CUDA torch (here: none at all).
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: GPU-0)'\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "GPU_CHECK_PYTHON": sys.executable}
    proc = run(tmp_path, env)
    assert proc.returncode == 1
    assert "cannot use the GPU" in proc.stderr
    assert not (tmp_path / "result.json").exists()
