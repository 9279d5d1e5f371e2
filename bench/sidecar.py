"""The sidecar language server: start-up, command round trip, idle footprint.

Measured in one run against the embedded local machine (up, with 3 running jobs):
  - start → `initialize` answered: spawn `python -m sidecar` (N times), beside the
    interpreter's own start (`python -c pass`) and a bare pygls server (a `LanguageServer`
    with no features: the floor of any pygls server, lsprotocol's types and converter
    included), in turn in the same rounds; RSS/PSS of each 1 s after `initialized`.
    `python -m sidecar` is the bridge to the language server hosted in the orch agent
    (issue 20): measured with the agent running ("warm agent") and with the agent stopped
    before each start ("cold agent": the bridge starts it), beside the server in the
    window's own process (`ORCH_LSP_HOSTED=0`, what every window ran before);
  - `orch.status` executeCommand round trip on the open server (N times), against the same
    fresh-process `orch status`;
  - idle RSS and idle CPU over IDLE_S seconds with the machine up and jobs running (the
    server pushes `orch/status` only on change; nothing polls from the client).
Goals (issue 6): initialized <= 400 ms, status p50 <= 2 ms, idle RSS <= 60 MB, idle CPU < 0.5 %.

    .venv/bin/python bench/sidecar.py [--idle 60] [--source DIR] [--baseline DIR] [--label L]
        [--save F] [--before F]

`--source` measures another checkout's `python -m sidecar` with this script; `--baseline`
also starts another checkout's (say main's) in the same rounds, for before/after start times
under the same load; `--save` keeps the JSON and `--before` puts an earlier run beside this
one (its idle figures: the idle part runs one checkout at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from bench.common import REPO, emit, orch_env, summary_ms

N_START = 8
N_CALLS = 200
BARE_PYGLS = "from pygls.lsp.server import LanguageServer; LanguageServer('bare', '1').start_io()"


async def start_client(
    cwd: Path, env: dict[str, str], argv: tuple[str, ...] = ("-m", "sidecar")
) -> LanguageClient:
    client = LanguageClient("orch-bench", "1")
    await client.start_io(sys.executable, *argv, cwd=str(cwd), env=env)
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


def memory_mb(pid: int) -> tuple[float, float]:
    """RSS and PSS of a process, in MB (`/proc/PID/smaps_rollup`)."""
    rss = pss = float("nan")
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return rss, pss


# (environment, argv after the interpreter, stop the agent before each start)
Variant = tuple[dict[str, str], tuple[str, ...], bool]


def stop_agent(env: dict[str, str]) -> None:
    agent = [sys.executable, "-m", "sidecar.agent", "stop"]
    subprocess.run(agent, env=env, capture_output=True, timeout=60, check=False)


async def starts(project: Path, variants: dict[str, Variant]) -> dict:
    """Spawn → `initialize` answered for each variant (env, argv), N_START rounds taking the
    variants in turn (so the machine's load falls on all alike), with `python -c pass` in
    each round; for a sidecar also spawn → its first `orch.status` answered (what loads after
    the `initialize` reply is paid there); RSS/PSS of each 1 s after `initialized` in the
    last round (after that one status read)."""
    samples: dict[str, list[float]] = {name: [] for name in ["python -c pass", *variants]}
    memory: dict[str, tuple[float, float]] = {}
    for i in range(1 + N_START):  # round 0 warms the bytecode caches and is not counted
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=os.environ, check=True)
        if i:
            samples["python -c pass"].append(time.perf_counter() - began)
        for name, (env, argv, cold) in variants.items():
            if cold:
                stop_agent(env)
            began = time.perf_counter()
            client = await start_client(project, env, argv)
            if i:
                samples[name].append(time.perf_counter() - began)
            if argv == ("-m", "sidecar"):  # and to the first `orch.status` answered
                await execute(client, "orch.status")
                if i:
                    samples.setdefault(f"{name} first status", []).append(
                        time.perf_counter() - began
                    )
            if i == N_START:
                await asyncio.sleep(1.0)
                assert client._server is not None
                memory[name] = memory_mb(client._server.pid)
            await client.shutdown_async(None)
            client.exit(None)
            await client.stop()
    found: dict[str, dict] = {}
    for name, times in samples.items():
        found[name] = summary_ms(times)
        if name in memory:
            rss, pss = memory[name]
            found[name].update(rss_mb=round(rss, 1), pss_mb=round(pss, 1))
    return found


async def measure(tmp: Path, idle_s: float, source: Path, baseline: Path | None) -> dict:
    project = tmp / "proj"
    project.mkdir()
    env = orch_env(ORCH_HOME=str(tmp / "home"), PYTHONPATH=str(source))
    os.environ.update(ORCH_HOME=env["ORCH_HOME"])

    in_window = {**env, "ORCH_LSP_HOSTED": "0"}
    variants: dict[str, Variant] = {
        "bare pygls": (env, ("-c", BARE_PYGLS), False),
        "sidecar": (env, ("-m", "sidecar"), False),
        "sidecar cold agent": (env, ("-m", "sidecar"), True),
        "sidecar in-window": (in_window, ("-m", "sidecar"), False),
    }
    if baseline is not None:
        base_env = {**env, "PYTHONPATH": str(baseline), "ORCH_HOME": str(tmp / "base-home")}
        variants["baseline sidecar"] = (base_env, ("-m", "sidecar"), False)
        variants["baseline sidecar cold agent"] = (base_env, ("-m", "sidecar"), True)
    started = await starts(project, variants)
    python_start, bare, sidecar = (
        started["python -c pass"],
        started["bare pygls"],
        started["sidecar"],
    )

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

        assert client._server is not None
        pid = client._server.pid
        await asyncio.sleep(2)
        ticks, began = cpu_ticks(pid), time.monotonic()
        await asyncio.sleep(idle_s)
        idle_cpu = (cpu_ticks(pid) - ticks) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - began)
        rss, pss = memory_mb(pid)
        agent_rss, agent_pss = memory_mb(agent_pid(env))
    finally:
        for i in range(3):
            await execute(client, "orch.jobs.stop", {"name": f"idle{i}"})
        await execute(client, "orch.machine.down")
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
        for home_env in (env, *(v[0] for k, v in variants.items() if k.startswith("baseline"))):
            stop_agent(home_env)  # the agents the windows started (else they linger)
    return {
        "source": str(source),
        "baseline": None
        if baseline is None
        else {
            "source": str(baseline),
            **started["baseline sidecar"],
            "first_status": started["baseline sidecar first status"],
            "cold_agent": started["baseline sidecar cold agent"],
            "cold_agent_first_status": started["baseline sidecar cold agent first status"],
        },
        "first_status": started["sidecar first status"],
        "cold_agent": started["sidecar cold agent"],
        "cold_agent_first_status": started["sidecar cold agent first status"],
        "in_window": started["sidecar in-window"],
        "in_window_first_status": started["sidecar in-window first status"],
        "python_start": python_start,
        "bare_pygls": bare,
        "start_to_initialized": sidecar,
        "status_roundtrip": summary_ms(calls),
        "cli_status_process": summary_ms(cli),
        "idle_rss_mb": round(rss, 1),
        "idle_pss_mb": round(pss, 1),
        "agent_idle_rss_mb": round(agent_rss, 1),
        "agent_idle_pss_mb": round(agent_pss, 1),
        "idle_cpu_percent": round(100 * idle_cpu, 3),
        "idle_seconds": idle_s,
    }


def agent_pid(env: dict[str, str]) -> int:
    state = Path(env["ORCH_HOME"]) / "agent" / "state.json"
    return int(json.loads(state.read_text())["pid"])


def hosted_rows(r: dict, label: str) -> list[list[object]]:
    """The hosted bridge with a cold agent, and the server in the window's own process."""
    if "cold_agent" not in r:
        return []
    cold, own = r["cold_agent"], r["in_window"]
    base = r.get("baseline") or {}
    baseline_cold: list[list[object]] = []
    if "cold_agent" in base:
        baseline_cold = [
            [
                label,
                f"baseline {Path(base['source']).name}, cold agent: start → initialize p50 "
                "(first orch.status)",
                f"{base['cold_agent']['p50_ms']:.0f} ms "
                f"({base['cold_agent_first_status']['p50_ms']:.0f} ms)",
                "",
                "",
            ]
        ]
    return [
        *baseline_cold,
        [
            label,
            "sidecar, cold agent (the bridge starts it): start → initialize p50",
            f"{cold['p50_ms']:.0f} ms",
            "<= 400 ms",
            "yes" if cold["p50_ms"] <= 400 else "NO",
        ],
        [
            label,
            "sidecar, cold agent: start → first orch.status answered p50",
            f"{r['cold_agent_first_status']['p50_ms']:.0f} ms",
            "",
            "",
        ],
        [
            label,
            "server in the window's process (ORCH_LSP_HOSTED=0): start → initialize p50",
            f"{own['p50_ms']:.0f} ms (first orch.status "
            f"{r['in_window_first_status']['p50_ms']:.0f} ms)",
            "",
            "",
        ],
        [
            label,
            "server in the window's process: RSS / PSS 1 s after initialized",
            f"{own['rss_mb']} / {own['pss_mb']} MB",
            "",
            "",
        ],
        [
            label,
            "the agent (hosting every window): idle RSS / PSS (machine up, 3 jobs)",
            f"{r['agent_idle_rss_mb']} / {r['agent_idle_pss_mb']} MB",
            "",
            "",
        ],
    ]


def rows(r: dict) -> list[list[object]]:
    s, c, cli = r["start_to_initialized"], r["status_roundtrip"], r["cli_status_process"]
    py, bare = r["python_start"], r["bare_pygls"]
    label = r.get("label", "now")

    def ok(good: bool) -> str:
        return "yes" if good else "NO"

    base: list[list[object]] = []
    if b := r.get("baseline"):
        name = Path(b["source"]).name
        base = [
            [
                label,
                f"baseline {name}: start → initialize p50 (same rounds)",
                f"{b['p50_ms']:.0f} ms ({b['p50_ms'] / bare['p50_ms']:.2f}x bare pygls)",
                "<= 400 ms",
                ok(b["p50_ms"] <= 400),
            ],
            [
                label,
                f"baseline {name}: start → first orch.status answered p50",
                f"{b['first_status']['p50_ms']:.0f} ms",
                "",
                "",
            ],
            [
                label,
                f"baseline {name}: RSS / PSS 1 s after initialized",
                f"{b['rss_mb']} / {b['pss_mb']} MB",
                "",
                "",
            ],
        ]
    table: list[list[object]] = [
        [label, "`python -c pass` p50 (interpreter's own start)", f"{py['p50_ms']:.0f} ms", "", ""],
        [label, "bare pygls server: start → initialize p50", f"{bare['p50_ms']:.0f} ms", "", ""],
        [
            label,
            "sidecar (the bridge, agent running): start → initialize p50",
            f"{s['p50_ms']:.0f} ms ({s['p50_ms'] / py['p50_ms']:.0f}x python, "
            f"{s['p50_ms'] / bare['p50_ms']:.2f}x bare pygls)",
            "<= 400 ms",
            ok(s["p50_ms"] <= 400),
        ],
        *(
            [
                [
                    label,
                    "sidecar: start → first orch.status answered p50",
                    f"{r['first_status']['p50_ms']:.0f} ms",
                    "",
                    "",
                ]
            ]
            if "first_status" in r
            else []
        ),
        [
            label,
            "bare pygls server: RSS / PSS after initialize",
            f"{bare['rss_mb']} / {bare['pss_mb']} MB",
            "(floor)",
            "",
        ],
        [
            label,
            "sidecar (the bridge): RSS / PSS 1 s after initialized (no command)",
            f"{s['rss_mb']} / {s['pss_mb']} MB",
            "<= 60 MB",
            ok(s["rss_mb"] <= 60),
        ],
        [
            label,
            "orch.status round trip p50",
            f"{c['p50_ms']:.2f} ms",
            "<= 2 ms",
            ok(c["p50_ms"] <= 2),
        ],
        [label, "fresh `orch status` process p50 (naive)", f"{cli['p50_ms']:.0f} ms", "", ""],
        [
            label,
            "window process (the bridge): idle RSS / PSS (machine up, 3 jobs)",
            f"{r['idle_rss_mb']} / {r.get('idle_pss_mb', '-')} MB",
            "<= 60 MB",
            ok(r["idle_rss_mb"] <= 60),
        ],
        [
            label,
            f"idle CPU over {r['idle_seconds']:.0f} s",
            f"{r['idle_cpu_percent']} %",
            "< 0.5 %",
            ok(r["idle_cpu_percent"] < 0.5),
        ],
    ]
    return [*base, *table, *hosted_rows(r, label)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=60.0, help="idle window in seconds")
    parser.add_argument("--source", type=Path, default=REPO, help="the orch checkout to run")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose start is measured in turn with it"
    )
    parser.add_argument("--label", default="now")
    parser.add_argument("--save", type=Path, help="keep this run's JSON here")
    parser.add_argument("--before", type=Path, help="an earlier run's --save file")
    args = parser.parse_args()
    baseline = args.baseline.resolve() if args.baseline else None
    with tempfile.TemporaryDirectory(prefix="orch-bench-sidecar-") as tmp:
        r = asyncio.run(measure(Path(tmp), args.idle, args.source.resolve(), baseline))
    r["label"] = args.label
    r["cli_over_roundtrip"] = round(
        r["cli_status_process"]["p50_ms"] / r["status_roundtrip"]["p50_ms"], 1
    )
    if args.save:
        args.save.write_text(json.dumps(r, indent=2))
    runs = [json.loads(args.before.read_text()), r] if args.before else [r]
    table = [row for run in runs for row in rows(run)]
    emit("sidecar", {"runs": runs}, table, headers=("run", "metric", "value", "goal", "ok"))


if __name__ == "__main__":
    main()
