"""Profiling sessions: the trace carries the lane/item labels and the summary agrees with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpu.engine import EngineConfig
from gpu.profiling import (
    NSYS_TRACE,
    SessionConfig,
    _without_out_and_nsys,
    build_engine,
    find_py_spy,
    run_session,
)
from gpu.trace_summary import (
    LANE_LABEL,
    label_events,
    load_trace_events,
    overlap_stats,
    render_summary_table,
    union_length,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> tuple[dict, Path, SessionConfig]:
    out = tmp_path_factory.mktemp("profile")
    cfg = SessionConfig(
        model="sam2", requests=2, batch_size=4, lanes=2, size=256,
        engine=EngineConfig(random_weights=True),
    )  # fmt: skip
    engine = build_engine(cfg)
    try:
        summary = run_session(cfg, out, engine)
    finally:
        engine.close()
    return summary, out, cfg


def test_session_writes_trace_and_summary(session) -> None:
    summary, out, _ = session
    assert (out / "trace.json").stat().st_size > 10_000
    assert json.loads((out / "summary.json").read_text()) == summary


def test_trace_contains_lane_and_item_labels(session) -> None:
    _, out, cfg = session
    events = load_trace_events(out / "trace.json")
    names = {e["name"] for e in events}
    assert {"batch0", "batch1"} <= names
    # 4 items on 2 lanes: micro-batches of 2, lane0 takes items 0-1, lane1 items 2-3.
    assert {"lane0/items0-1", "lane1/items2-3"} <= names
    labelled = [e for e in events if LANE_LABEL.match(e["name"])]
    assert len(labelled) == cfg.requests * cfg.lanes
    # Real operators were recorded inside the lane threads (profile_all_threads).
    lane_tids = {e["tid"] for e in labelled}
    assert any(e.get("cat") == "cpu_op" and e["tid"] in lane_tids for e in events)


def test_summary_numbers_match_the_trace(session) -> None:
    summary, out, cfg = session
    events = load_trace_events(out / "trace.json")
    lanes = label_events(events)
    activity = summary["lane_activity"]
    assert set(activity["lanes"]) == set(lanes) == {"lane0", "lane1"}
    for name, intervals in lanes.items():
        assert activity["lanes"][name]["ranges"] == len(intervals)
        assert activity["lanes"][name]["items"] == 2 * len(intervals)  # items0-1, items2-3
        assert activity["lanes"][name]["busy_ms"] == pytest.approx(
            union_length(intervals) / 1000, abs=1e-3
        )
    overlapped, _busy = overlap_stats(lanes)
    assert activity["overlap_ms"] == pytest.approx(overlapped / 1000, abs=1e-3)
    batches = [e for e in events if e["name"] in ("batch0", "batch1")]
    span_ms = (max(e["ts"] + e["dur"] for e in batches) - min(e["ts"] for e in batches)) / 1000
    assert activity["workload_span_ms"] == pytest.approx(span_ms, abs=1e-3)
    # Consistency between the numbers themselves.
    assert summary["images"] == cfg.requests * cfg.batch_size == activity["items_labelled"]
    assert summary["throughput_images_per_s"] == pytest.approx(
        summary["images"] / summary["wall_s"], rel=1e-3
    )
    assert 0 <= activity["overlap_ms"] <= activity["any_lane_busy_ms"] <= span_ms + 1e-3
    assert span_ms <= summary["wall_s"] * 1000 + 1
    total_busy = sum(v["busy_ms"] for v in activity["lanes"].values())
    assert activity["mean_parallelism"] == pytest.approx(total_busy / span_ms, abs=2e-3)
    assert summary["top_operators"] and summary["top_operators"][0]["name"].startswith("aten::")
    assert summary["memory"]["host_peak_rss_mb"] > 100
    assert summary["config"]["weights"]["sam2"].startswith("random")


def test_summary_table_renders(session) -> None:
    text = render_summary_table(session[0])
    assert "throughput" in text and "lane0" in text and "lane1" in text
    assert "ui.perfetto.dev" in text and "chrome://tracing" in text


def test_overlap_sweep_on_known_intervals() -> None:
    lanes = {"lane0": [(0.0, 10.0), (10.0, 20.0)], "lane1": [(5.0, 15.0)], "lane2": [(30.0, 40.0)]}
    assert overlap_stats(lanes) == (10.0, 30.0)
    assert union_length([(0, 5), (3, 8), (10, 12)]) == 10


def test_cli_runs_a_session_and_writes_files(tmp_path) -> None:
    out = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "gpu.profiling", "--model", "sam2", "--requests", "1",
         "--batch-size", "2", "--lanes", "2", "--size", "256", "--random-weights",
         "--out", str(out)],
        capture_output=True, text=True, timeout=240, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "throughput" in proc.stdout and "lane1" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 2 and (out / "trace.json").exists()
    if summary["device"]["type"] == "cpu":
        assert summary["nsys"]["report"] is None


def test_cli_without_weights_fails_with_a_hint(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "gpu.profiling", "--model", "sam2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "--random-weights" in proc.stderr


def test_nsys_rerun_arguments_drop_out_and_nsys() -> None:
    argv = ["--model", "sam2", "--out", "x", "--nsys=on", "--lanes", "2", "--nsys", "auto"]
    assert _without_out_and_nsys(argv) == ["--model", "sam2", "--lanes", "2"]
    argv = ["--py-spy", "--lanes", "2", "--py-spy", "on", "--py-spy=auto", "--size", "64"]
    assert _without_out_and_nsys(argv) == ["--lanes", "2", "--size", "64"]


def test_nsys_traces_cudnn() -> None:
    assert "cudnn" in NSYS_TRACE.split(",") and "cuda" in NSYS_TRACE.split(",")


@pytest.mark.skipif(find_py_spy() is None, reason="py-spy is not installed in this environment")
def test_py_spy_flame_graph_of_the_same_workload(tmp_path) -> None:
    out = tmp_path / "spy"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTORCH_CUDA_ALLOC_CONF", None)
    env.pop("PYTORCH_ALLOC_CONF", None)
    proc = subprocess.run(
        [sys.executable, "-m", "gpu.profiling", "--model", "birefnet", "--requests", "1",
         "--batch-size", "2", "--lanes", "2", "--size", "64", "--random-weights",
         "--birefnet-backbone", "pvt_v2_b0", "--birefnet-size", "64", "--device", "cpu",
         "--nsys", "off", "--py-spy", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["py_spy"] == {"flamegraph": "flame.svg", "reason": None}
    assert summary["files"]["flamegraph"] == "flame.svg"
    assert summary["allocator"] == "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"
    svg = (out / "flame.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    # The flame graph sampled the real workload: the lanes run the model's Python frames.
    assert "gpu/models/birefnet_blocks.py" in svg and "forward" in svg
    assert "flame   flame.svg" in proc.stdout


def test_trace_summary_module_renders_a_fetched_summary(session) -> None:
    _, out, _ = session
    proc = subprocess.run(
        [sys.executable, "-m", "gpu.trace_summary", str(out / "summary.json")],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == render_summary_table(
        json.loads((out / "summary.json").read_text())
    )
