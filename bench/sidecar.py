"""The sidecar language server: start-up, command round trip, idle footprint.

Measured in one run against the embedded local machine (up, with 3 running jobs):
  - start → `initialized`: spawn `python -m sidecar`, `initialize` answered (N times);
    against the naive alternative of a fresh `orch status` process per refresh;
  - `orch.status` executeCommand round trip on the open server (N times), against the same
    fresh-process `orch status`;
  - idle RSS and idle CPU over IDLE_S seconds with the machine up and jobs running (the
    server pushes `orch/status` only on change; nothing polls from the client).
Goals (issue 6): initialized <= 400 ms, status p50 <= 2 ms, idle RSS <= 60 MB, idle CPU < 0.5 %.

    .venv/bin/python bench/sidecar.py [--idle 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from bench.common import emit, orch_env, summary_ms

N_START = 8
N_CALLS = 200


async def start_client(cwd: Path, env: dict[str, str]) -> LanguageClient:
    client = LanguageClient("orch-bench", "1")
    await client.start_io(sys.executable, "-m", "sidecar", cwd=str(cwd), env=env)
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            root_uri=cwd.as_uri(),
            initialization_options={"machine": None, "logLevel": "warning", "clientName": "bench"},
        )
    )
    client.initialized(types.InitializedParams())
    return client


async def execute(client: LanguageClient, command: str, args: dict | None = None) -> object:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=command, arguments=[args or {}])
    )


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(tmp: Path, idle_s: float) -> dict:
    project = tmp / "proj"
    project.mkdir()
    env = orch_env(ORCH_HOME=str(tmp / "home"))
    os.environ.update(ORCH_HOME=env["ORCH_HOME"])

    starts = []
    for _ in range(N_START):
        began = time.perf_counter()
        client = await start_client(project, env)
        starts.append(time.perf_counter() - began)
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()

    client = await start_client(project, env)
    try:
        await execute(client, "orch.machine.up")
        for i in range(3):
            await execute(client, "orch.jobs.run", {"name": f"idle{i}", "command": "sleep 600"})
        for _ in range(10):
            await execute(client, "orch.status")
        calls = []
        for _ in range(N_CALLS):
            began = time.perf_counter()
            await execute(client, "orch.status")
            calls.append(time.perf_counter() - began)

        cli = []
        for _ in range(10):
            began = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "sidecar.cli.main", "status"],
                cwd=project,
                env=env,
                check=True,
                capture_output=True,
            )
            cli.append(time.perf_counter() - began)

        pid = next(
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and _is_server(int(p.name), env["ORCH_HOME"])
        )
        await asyncio.sleep(2)
        ticks, began = cpu_ticks(pid), time.monotonic()
        await asyncio.sleep(idle_s)
        idle_cpu = (cpu_ticks(pid) - ticks) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - began)
        rss = rss_mb(pid)
    finally:
        for i in range(3):
            await execute(client, "orch.jobs.stop", {"name": f"idle{i}"})
        await execute(client, "orch.machine.down")
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    return {
        "start_to_initialized": summary_ms(starts),
        "status_roundtrip": summary_ms(calls),
        "cli_status_process": summary_ms(cli),
        "idle_rss_mb": round(rss, 1),
        "idle_cpu_percent": round(100 * idle_cpu, 3),
        "idle_seconds": idle_s,
    }


def _is_server(pid: int, home: str) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return cmd[1:3] == [b"-m", b"sidecar"] and home.encode() in environ


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=60.0, help="idle window in seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-bench-sidecar-") as tmp:
        r = asyncio.run(measure(Path(tmp), args.idle))
    s, c, cli = r["start_to_initialized"], r["status_roundtrip"], r["cli_status_process"]
    r["cli_over_roundtrip"] = round(cli["p50_ms"] / c["p50_ms"], 1)
    emit(
        "sidecar",
        r,
        [
            [
                "start → initialized p50",
                f"{s['p50_ms']:.0f} ms",
                "<= 400 ms",
                "yes" if s["p50_ms"] <= 400 else "NO",
            ],
            [
                "orch.status round trip p50",
                f"{c['p50_ms']:.2f} ms",
                "<= 2 ms",
                "yes" if c["p50_ms"] <= 2 else "NO",
            ],
            ["fresh `orch status` process p50", f"{cli['p50_ms']:.0f} ms", "(naive)", ""],
            ["naive / round trip", f"{r['cli_over_roundtrip']}x", "", ""],
            [
                "idle RSS",
                f"{r['idle_rss_mb']} MB",
                "<= 60 MB",
                "yes" if r["idle_rss_mb"] <= 60 else "NO",
            ],
            [
                f"idle CPU over {args.idle:.0f} s",
                f"{r['idle_cpu_percent']} %",
                "< 0.5 %",
                "yes" if r["idle_cpu_percent"] < 0.5 else "NO",
            ],
        ],
    )


if __name__ == "__main__":
    main()
