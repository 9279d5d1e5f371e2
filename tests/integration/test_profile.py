"""`orch profile` end to end on the embedded local machine: the real gpu.profiling workload
runs as a job (CPU here), its output streams back, trace and summary are fetched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import REPO, run_orch

pytestmark = pytest.mark.integration

GPU_PYTHON = os.environ.get("ORCH_GPU_PYTHON", "")


@pytest.mark.skipif(
    not GPU_PYTHON or not Path(GPU_PYTHON).exists(),
    reason="needs the GPU-service environment: scripts/test.sh sets ORCH_GPU_PYTHON "
    "(GPU_SETUP_ONLY=1 bash scripts/test_gpu.sh prints it)",
)
def test_orch_profile_runs_the_workload_and_fetches_trace_and_summary(
    orch_home: Path, project: Path
) -> None:
    (project / "orch.toml").write_text(f'[gpu]\npython = "{GPU_PYTHON}"\n')
    assert run_orch("up", cwd=project).returncode == 0
    try:
        result = run_orch(
            "profile",
            "--random-weights",
            "--py-spy",
            "--requests",
            "1",
            "--batch-size",
            "2",
            "--lanes",
            "2",
            "--size",
            "64",
            "-e",
            f"PYTHONPATH={REPO}",
            "--",
            "--birefnet-backbone",
            "pvt_v2_b0",
            "--birefnet-size",
            "64",
            "--device",
            "cpu",
            cwd=project,
            timeout=240,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        # The summary table streamed from the job, then the fetched files.
        assert "throughput" in result.stdout and "lane0" in result.stdout
        runs = list((project / "profiles").iterdir())
        assert len(runs) == 1
        summary = json.loads((runs[0] / "summary.json").read_text())
        trace = json.loads((runs[0] / "trace.json").read_text())
        labels = {e.get("name", "") for e in trace.get("traceEvents", [])}
        assert any(label.startswith("lane0/") for label in labels)
        assert any(label.startswith("lane1/") for label in labels)
        assert summary["images"] == 2
        # --py-spy: a flame graph of the same workload, fetched like the trace.
        assert summary["py_spy"] == {"flamegraph": "flame.svg", "reason": None}
        svg = (runs[0] / "flame.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "forward" in svg
        assert "flame graph:" in result.stdout and "flame.svg" in result.stdout
        assert summary["throughput_images_per_s"] == pytest.approx(2 / summary["wall_s"], rel=0.05)

        bad = run_orch(
            "profile", "--requests", "1", "--", "--device", "cpu", cwd=project, timeout=240
        )
        # No checkpoint and no --random-weights: a clear failure, not a traceback.
        assert bad.returncode == 1
        assert "profiling job" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        run_orch("down", cwd=project)
