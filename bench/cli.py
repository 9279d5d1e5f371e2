"""Cold-start cost of the `orch` command and the idle footprint of the local machine's server.

Measured, each in the same run as its floor: `orch --version` and `orch status` (a fresh
process each time) against a bare `python -c pass`; `orch status` both the ordinary way
(`ORCH_NO_AGENT=1`: the CLI imports the facade and reads everything itself) and as a thin
client of a running orch agent (answered from its watched state); the idle RSS of the local
machine's server process after it has served a few sessions, against a bare interpreter's RSS.
Goals (issue 2): `orch status` cold start <= 300 ms; local machine idle RSS <= 50 MB.
Goal (issue 20): `orch status` through the agent <= 60 ms p50 and <= 5x `python -c pass`.

    .venv/bin/python bench/cli.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, orch_env, summary_ms

N = 20
ROUNDS = 10
JOB = ["sleep", "60"]


def timed(argv: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def series(argv: list[str], env: dict[str, str], cwd: str) -> list[float]:
    for _ in range(2):
        timed(argv, env, cwd)
    return [timed(argv, env, cwd) for _ in range(N)]


VERBS = ("run", "logs", "restart", "stop", "rm")


def job_cycles(orch: list[str], env: dict[str, str], cwd: str) -> dict[str, list[float]]:
    """`orch run --replace bench -- sleep 60`, `orch logs bench`, `orch restart bench`, `orch
    stop bench`, `orch rm bench`, timed each, ROUNDS times after one untimed cycle (the agent's
    connection is open after it)."""
    times: dict[str, list[float]] = {verb: [] for verb in VERBS}
    for round_ in range(ROUNDS + 1):
        for verb, argv in (
            ("run", [*orch, "run", "--replace", "bench", "--", *JOB]),
            ("logs", [*orch, "logs", "bench"]),
            ("restart", [*orch, "restart", "bench"]),
            ("stop", [*orch, "stop", "bench"]),
            ("rm", [*orch, "rm", "bench"]),
        ):
            took = timed(argv, env, cwd)
            if round_:
                times[verb].append(took)
    return times


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> None:
    orch = [str(Path(sys.executable).with_name("orch"))]
    if not Path(orch[0]).exists():
        orch = [sys.executable, "-m", "sidecar.cli.main"]
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        env = orch_env(ORCH_HOME=os.path.join(tmp, "home"))
        project = os.path.join(tmp, "proj")
        os.mkdir(project)
        floor = series([sys.executable, "-c", "pass"], env, project)
        version = series([*orch, "--version"], env, project)
        status_down = series([*orch, "status"], env, project)
        plain = {**env, "ORCH_NO_AGENT": "1"}  # nothing below starts an agent by itself
        up = subprocess.run(
            [*orch, "up", "--json"],
            env=plain,
            cwd=project,
            check=True,
            capture_output=True,
            text=True,
        )
        info = json.loads(up.stdout)
        try:
            status_up = series([*orch, "status"], plain, project)
            jobs_plain = job_cycles(orch, plain, project)
            agent = [sys.executable, "-m", "sidecar.agent"]
            subprocess.run([*agent, "serve", "--detach"], env=env, cwd=project, check=True)
            try:
                status_agent = series([*orch, "status"], env, project)
                jobs_agent = job_cycles(orch, env, project)
            finally:
                subprocess.run([*agent, "stop"], env=env, cwd=project, capture_output=True)
            for _ in range(20):  # serve some sessions, then let it idle
                subprocess.run(
                    [*orch, "ssh", "--", "true"],
                    env=plain,
                    cwd=project,
                    check=True,
                    capture_output=True,
                )
            time.sleep(2)
            server_rss = rss_kb(info["pid"])
        finally:
            subprocess.run([*orch, "down", "--force"], env=plain, cwd=project, capture_output=True)
        bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
        time.sleep(1)
        bare_rss = rss_kb(bare.pid)
        bare.kill()
        bare.wait()

    s_floor, s_ver = summary_ms(floor), summary_ms(version)
    s_down, s_up = summary_ms(status_down), summary_ms(status_up)
    s_agent = summary_ms(status_agent)
    agent_ratio = round(s_agent["p50_ms"] / s_floor["p50_ms"], 2)
    agent_ok = s_agent["p50_ms"] <= 60 and agent_ratio <= 5
    results = {
        "python_floor": s_floor,
        "orch_version": s_ver,
        "orch_status_machine_stopped": s_down,
        "orch_status_machine_running": s_up,
        "orch_status_through_agent": s_agent,
        "status_over_floor_ratio": round(s_up["p50_ms"] / s_floor["p50_ms"], 2),
        "agent_status_over_floor_ratio": agent_ratio,
        "agent_speedup_vs_ordinary": round(s_up["p50_ms"] / s_agent["p50_ms"], 2),
        "jobs_in_process": {verb: summary_ms(t) for verb, t in jobs_plain.items()},
        "jobs_through_agent": {verb: summary_ms(t) for verb, t in jobs_agent.items()},
        "local_server_idle_rss_mb": round(server_rss / 1024, 1),
        "bare_python_rss_mb": round(bare_rss / 1024, 1),
    }
    ok = s_up["p50_ms"] <= 300
    job_rows: list[list[object]] = []
    for verb in VERBS:
        thin, fat = summary_ms(jobs_agent[verb])["p50_ms"], summary_ms(jobs_plain[verb])["p50_ms"]
        job_rows.append(
            [
                f"orch {verb} p50 (warm): agent / in-process",
                f"{thin:.0f} / {fat:.0f} ms",
                f"agent {thin / s_floor['p50_ms']:.1f}x floor",
                f"{fat / thin:.1f}x faster",
            ]
        )
    emit(
        "cli",
        results,
        [
            ["python -c pass p50", f"{s_floor['p50_ms']:.0f} ms", "(floor)", ""],
            ["orch --version p50", f"{s_ver['p50_ms']:.0f} ms", "", ""],
            [
                "orch status p50 (stopped)",
                f"{s_down['p50_ms']:.0f} ms",
                "<= 300 ms",
                "yes" if s_down["p50_ms"] <= 300 else "NO",
            ],
            [
                "orch status p50 (running, no agent)",
                f"{s_up['p50_ms']:.0f} ms",
                "<= 300 ms",
                "yes" if ok else "NO",
            ],
            [
                "orch status p50 (running, agent)",
                f"{s_agent['p50_ms']:.0f} ms ({agent_ratio}x floor)",
                "<= 60 ms, <= 5x",
                "yes" if agent_ok else "NO",
            ],
            *job_rows,
            [
                "local server idle RSS",
                f"{server_rss / 1024:.1f} MB",
                "<= 50 MB",
                "yes" if server_rss <= 50 * 1024 else "NO",
            ],
            ["bare python RSS", f"{bare_rss / 1024:.1f} MB", "(floor)", ""],
        ],
    )


if __name__ == "__main__":
    main()
