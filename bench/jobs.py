"""Remote jobs: `orch status` with 1, 10, 50 and 100 jobs, and log-follow latency, on both
loopback backends.

    .venv/bin/python bench/jobs.py

For each backend (a real OpenSSH sshd on 127.0.0.1, and the embedded local machine):
  * status_warm at 1, 10, 50 and 100 running jobs: `Orchestrator.jobs_status()` over the
    pooled connection (what the sidecar and the extension do): ONE round trip that reads every
    job's state, memory and CPU; interleaved with the same read after emptying the status
    cache (`status_uncached`: every job's meta and command read and sent again);
  * naive_cold: a fresh `ssh HOST tmux list-sessions` (no ControlMaster), the naive way to
    ask, which tells far less (no exit codes, memory or CPU);
  * cli_status: the `orch status` command end to end (a new Python process, a new connection);
  * follow latency: a job prints `time.time_ns()` every 20 ms; the time from that stamp to the
    line arriving from `jobs_follow` (same computer, so the clocks agree).
Goals: status_warm p50 <= 30 ms at 100 jobs and >= 8x faster than naive_cold (10 jobs);
follow p50 <= 50 ms. The sshd user's home is shared with the tests: the benchmark uses its own
remote folder and job names and removes only those.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.pop(0)  # this folder: its queue.py would shadow the stdlib's `queue`
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, orch_env, summary_ms
from remote_config import job_scripts as js
from remote_config.jobs import StatusCache
from sidecar.app import Orchestrator
from sidecar.jobs.tmux import TmuxBackend

N_JOBS = 10
COUNTS = (1, 10, 50, 100)
STATUS_CALLS = 60
COLD_CALLS = 15
CLI_CALLS = 5
FOLLOW_LINES = 150


PREFIX = f"b{os.getpid()}-"
MADE: list[str] = []


async def start_jobs(orch: Orchestrator, upto: int) -> None:
    while len(MADE) < upto:
        name = f"{PREFIX}job-{len(MADE)}"
        await orch.jobs_run(name, f"while :; do echo {len(MADE)} $(date +%s); sleep 1; done")
        MADE.append(name)


async def warm_status(orch: Orchestrator, count: int) -> tuple[list[float], list[float]]:
    """(cached, uncached) status read times, interleaved: `cached` is what the sidecar does
    (the remote skips the jobs whose key did not change); `uncached` empties the status
    cache before each read, as every read did before it existed."""
    await start_jobs(orch, count)
    jobs = [j for j in await orch.jobs_status() if j.name.startswith(PREFIX)]
    assert len(jobs) == count and all(j.state == "running" for j in jobs), jobs
    backend = orch.jobs()
    assert isinstance(backend, TmuxBackend)
    for _ in range(3):
        await orch.jobs_status()
    warm: list[float] = []
    uncached: list[float] = []
    for _ in range(STATUS_CALLS):
        started = time.perf_counter()
        again = await orch.jobs_status()
        warm.append(time.perf_counter() - started)
        backend.status_cache = StatusCache()
        started = time.perf_counter()
        fresh = await orch.jobs_status()
        uncached.append(time.perf_counter() - started)
        assert [j.name for j in again] == [j.name for j in fresh]
    return warm, uncached


async def bench_backend(kind: str, orch: Orchestrator, cold_argv: list[str]) -> dict[str, Any]:
    by_count: dict[Any, Any] = {}
    uncached: dict[int, dict[str, float]] = {}
    for count in COUNTS:
        if count > N_JOBS and "cold" not in by_count:
            by_count["cold"] = await cold_and_cli(orch, cold_argv)
        warm_s, uncached_s = await warm_status(orch, count)
        by_count[count] = summary_ms(warm_s)
        uncached[count] = summary_ms(uncached_s)
    cold, cli = by_count.pop("cold")
    warm = by_count[N_JOBS]
    follow = await follow_latency(orch)
    result = {
        "status_warm": warm,
        "status_warm_by_jobs": {str(k): v for k, v in by_count.items()},
        "status_uncached_by_jobs": {str(k): v for k, v in uncached.items()},
        "naive_cold_ssh_tmux_ls": summary_ms(cold),
        "cli_status": summary_ms(cli),
        "follow_latency": summary_ms(follow),
    }
    result["speedup_p50"] = round(
        result["naive_cold_ssh_tmux_ls"]["p50_ms"] / result["status_warm"]["p50_ms"], 1
    )
    return result


async def cold_and_cli(orch: Orchestrator, cold_argv: list[str]) -> tuple[list[float], ...]:
    cold = []
    for _ in range(COLD_CALLS):
        started = time.perf_counter()
        out = subprocess.run(cold_argv, capture_output=True, text=True, timeout=30)
        cold.append(time.perf_counter() - started)
        assert out.returncode == 0 and out.stdout.count(PREFIX) == N_JOBS, out.stderr
    cli = []
    for _ in range(CLI_CALLS):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "sidecar.cli.main", "status"],
            cwd=orch.cwd,
            env=orch_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        cli.append(time.perf_counter() - started)
        assert out.returncode == 0 and f"{PREFIX}job-9" in out.stdout, out.stderr
    return cold, cli


async def follow_latency(orch: Orchestrator) -> list[float]:
    script = (
        "import time\n"
        f"for _ in range({FOLLOW_LINES}):\n"
        "    print(time.time_ns(), flush=True)\n"
        "    time.sleep(0.02)\n"
    )
    MADE.append(f"{PREFIX}stamps")
    await orch.jobs_run(f"{PREFIX}stamps", ["python3", "-c", script])
    latencies: list[float] = []
    pending = ""
    async for chunk in orch.jobs_follow(f"{PREFIX}stamps", tail=0):
        now = time.time_ns()
        pending += chunk
        *lines, pending = pending.split("\n")
        latencies += [(now - int(line)) / 1e9 for line in lines if line.strip()]
    return latencies[5:]  # the first lines race the follower's start


async def cleanup(orch: Orchestrator) -> None:
    """Remove only this run's jobs and remote folder (the sshd user is shared with tests)."""
    target = await orch.ssh_target()
    script = js.cleanup_script(MADE, [orch.config.remote_dir])
    await orch.pool.run(target, "sh -s", input=script, timeout=120)
    MADE.clear()
    await orch.close()


async def run_sshd(root: Path) -> dict[str, Any] | str:
    from tests.helpers import make_sshd, sshd_available

    reason = sshd_available()
    if reason:
        return f"skipped: {reason}"
    folder = Path(tempfile.mkdtemp(prefix="orch-bench-sshd-"))
    folder.chmod(0o755)
    sshd = make_sshd(folder)
    (folder / "authorized_keys").chmod(0o644)
    project = root / "sshd-proj"
    project.mkdir()
    (project / "orch.toml").write_text(
        '[project]\ndefault_machine = "box"\n'
        + f'[sync]\nremote_dir = "~/work/bench-jobs-{os.getpid()}"\n'
        + sshd.machine_toml()
    )
    orch = Orchestrator(cwd=project)
    try:
        await orch.up()
        cold = sshd.ssh_argv(f'{js.SOCKET}; tmux -S "$S" list-sessions -F "#{{session_name}}"')
        return await bench_backend("sshd", orch, cold)
    finally:
        await cleanup(orch)
        sshd.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def run_local(root: Path) -> dict[str, Any]:
    project = root / "local-proj"
    project.mkdir()
    orch = Orchestrator(cwd=project)
    try:
        await orch.up()
        target = await orch.ssh_target()
        cold = [
            "ssh",
            "-F",
            str(orch.layout.ssh_config),
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            target.alias,
            f'{js.SOCKET}; tmux -S "$S" list-sessions -F "#{{session_name}}"',
        ]
        return await bench_backend("local", orch, cold)
    finally:
        await cleanup(orch)
        await Orchestrator(cwd=project).down()


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="orch-bench-jobs-"))
    os.environ["ORCH_HOME"] = str(root / "orch-home")
    try:
        results: dict[str, Any] = {
            "sshd": asyncio.run(run_sshd(root)),
            "local": asyncio.run(run_local(root)),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows: list[list[object]] = []
    for backend, r in results.items():
        if isinstance(r, str):
            rows.append([f"{backend}", r, "", ""])
            continue
        cold = r["naive_cold_ssh_tmux_ls"]["p50_ms"]
        follow = r["follow_latency"]["p50_ms"]
        for count, numbers in r["status_warm_by_jobs"].items():
            p50 = numbers["p50_ms"]
            goal = "<= 30" if count == "100" else ""
            before = r["status_uncached_by_jobs"][count]["p50_ms"]
            rows.append([f"{backend}: status p50, {count} jobs (ms)", p50, goal, p50 <= 30])
            rows.append([f"{backend}:   same, no status cache (ms)", before, "", ""])
        rows += [
            [f"{backend}: cold ssh + tmux ls p50 (ms)", cold, "", ""],
            [f"{backend}: speedup vs cold", r["speedup_p50"], ">= 8", r["speedup_p50"] >= 8],
            [f"{backend}: orch status CLI p50 (ms)", r["cli_status"]["p50_ms"], "", ""],
            [f"{backend}: follow latency p50 (ms)", follow, "<= 50", follow <= 50],
            [f"{backend}: follow latency p95 (ms)", r["follow_latency"]["p95_ms"], "", ""],
        ]
    emit("jobs", results, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
