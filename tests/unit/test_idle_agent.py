"""The idle agent's parts that need no machine: probes on a temp home, the injected clock,
a failing check counting as active, the ensure script, stop hooks, the status line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remote_config.model import LocalMachine, SSHMachine
from sidecar.idle import probe
from sidecar.idle.agent import Agent
from sidecar.idle.hooks import register_stop_hook, stop_hook
from sidecar.idle.service import agent_files, ensure_script, status_from_state
from sidecar.machines.base import MachineInfo
from sidecar.machines.registry import create

POLICY = {"idle_stop_s": 60.0, "warn_s": 20.0, "ttl_s": None, "ttl_hard": False, "interval_s": 5}


def write_config(home: Path, **extra: object) -> None:
    folder = home / ".orch" / "idle"
    folder.mkdir(parents=True, exist_ok=True)
    config = {"policy": POLICY, "hook": {"kind": "report"}, "markers": [], "cpu_scope": "home"}
    config.update(extra)
    (folder / "config.json").write_text(json.dumps(config))


def test_running_jobs_reads_the_job_state_files(tmp_path: Path) -> None:
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    logs = tmp_path / "logs"
    for name, meta, pid, result in [
        ("live", f"started=1 boot={boot}", os.getpid(), None),
        ("done", f"started=1 boot={boot}", os.getpid(), "exit_code=0"),
        ("old-boot", "started=1 boot=another", os.getpid(), None),
        ("dead", f"started=1 boot={boot}", 2**22 + 7, None),
        ("starting", f"started=1 boot={boot}", None, None),
    ]:
        (logs / name).mkdir(parents=True)
        (logs / name / "meta").write_text(meta.replace(" ", "\n") + "\n")
        if pid is not None:
            (logs / name / "pid").write_text(f"{pid} 1 {pid} 1\n")
        if result:
            (logs / name / "result").write_text(result)
    assert probe.running_jobs(tmp_path) == 2  # live + starting


def test_markers_give_the_newest_event(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("")
    (tmp_path / "b").write_text("")
    os.utime(tmp_path / "a", (100, 100))
    os.utime(tmp_path / "b", (200, 200))
    found = probe.marker_events(tmp_path, [["~/a", "sync"], ["~/b", "keep"], ["~/missing", "x"]])
    assert found == (200, "keep")


def test_a_failing_check_counts_as_active(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    signals = probe.gather(tmp_path, {"cpu_scope": "home"}, {}, time.time())
    assert any(a.startswith("check failed: gpu") for a in signals.active), signals
    smi.write_text("#!/bin/sh\necho 3\necho 97\n")
    signals = probe.gather(tmp_path, {"cpu_scope": "home"}, {}, time.time())
    assert "gpu 97%" in signals.active


def test_agent_with_an_injected_clock_logs_and_reports_only(tmp_path: Path) -> None:
    write_config(tmp_path, disable=["gpu", "cpu", "vscode", "terminals", "tmux"])
    clock = tmp_path / "clock"
    agent = Agent(tmp_path, clock)
    actions = []
    for now in (1000, 1030, 1045, 1061, 1070):
        clock.write_text(str(now))
        assert agent.run(None, once=True) == 0
        state = json.loads((tmp_path / ".orch" / "idle" / "state.json").read_text())
        actions.append(state["action"])
    assert actions == ["keep", "keep", "warn", "stop", "stop"]
    log = [json.loads(x) for x in (tmp_path / ".orch" / "idle.log").read_text().splitlines()]
    assert [e["action"] for e in log].count("report") == 1  # said once per idle period
    assert log[0]["signals"]["jobs"] == 0


def test_agent_exits_when_its_files_are_gone(tmp_path: Path) -> None:
    assert Agent(tmp_path).run(0.01) == 0


def test_shipped_agent_runs_without_orchs_checkout(tmp_path: Path) -> None:
    """The three shipped files alone (no sidecar, no pydantic) make a working agent."""
    _, files = agent_files()
    folder = tmp_path / ".orch" / "idle"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    write_config(tmp_path)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-I", str(folder / "orch_idle_agent.py"), "once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((folder / "state.json").read_text())["action"] == "keep"


def test_ensure_script_is_valid_sh() -> None:
    version, files = agent_files()
    script = ensure_script(version, files, {"policy": POLICY})
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    assert "exec python3" in script and version in script


def test_stop_hooks_per_kind(tmp_path: Path) -> None:
    from sidecar.layout import Layout

    layout = Layout(tmp_path)
    local = create("local", LocalMachine(), layout, "p")
    ssh = create("box", SSHMachine(kind="ssh", host="h"), layout, "p")
    info = MachineInfo(name="local", kind="local", state="running", pid=42)
    assert stop_hook(local, info, "stop") == {
        "kind": "signal",
        "pid": 42,
        "match": "sidecar.machines.local.server",
    }
    assert stop_hook(ssh, info, "stop")["kind"] == "report"
    register_stop_hook("ssh", lambda p, i, a: {"kind": "command", "argv": ["true", a]})
    try:
        assert stop_hook(ssh, info, "terminate") == {
            "kind": "command",
            "argv": ["true", "terminate"],
        }
    finally:
        from sidecar.idle.hooks import _HOOKS, _report

        _HOOKS["ssh"] = _report


def test_status_line_from_the_agent_state() -> None:
    state = {
        "checked_at": 1000.0,
        "action": "warn",
        "reason": "idle 25 min · stops in 5 min",
        "idle_s": 1500.0,
        "stops_at": 1300.0,
        "stop_hook": "signal",
        "interval_s": 60,
        "rule": "idle",
    }
    assert status_from_state(state, 1000.0).line == "idle 25 min · stops in 5 min"
    late = status_from_state(state, 1000.0 + 600)
    assert late.stale and "agent silent" in late.line
    report = status_from_state({**state, "stop_hook": "report"}, 1000.0)
    assert report.line == "idle 25 min · would stop in 5 min"
    active = status_from_state(
        {**state, "action": "keep", "reason": "active: 1 job(s) running"}, 1000.0
    )
    assert active.line == "active: 1 job(s) running"
