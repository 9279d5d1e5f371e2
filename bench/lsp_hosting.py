"""Thin-client language server or one hosted in the agent: what each VS Code window costs.

Issue 20 asks to choose between the language server as a thin client of the agent (one
`python -m sidecar` per window) and the language server hosted in the agent behind a
standard-library stdio↔socket bridge (one small bridge per window, the server's modules
loaded once in the agent), by measurement. Each variant's process is started N times; its
RSS is read (`/proc/PID/status`) once its imports are done, with the time that took:

  - bridge: `socket`, `selectors`, `json` — what a per-window bridge would import;
  - agent host: the agent's own modules and the facade;
  - agent host + language server: the same with the language server built (hosting);
  - language server: `build_server()` alone (the thin client, per window).

Per window, then: thin client = "language server"; hosted = "bridge", plus once
("agent host + language server" − "agent host"). docs/development.md records the choice.

Hosting was chosen and built (`sidecar/bridge.py`, `sidecar/agent/lsp_host.py`). The real
figures (`bench/footprint.py`, docs/performance.md) came out close to this prediction of
10.3 MB per window and +18.7 MB once: the built bridge idles at 12.2 MB (its two threads,
buffers and `sidecar.agent_client` on top of this variant's imports) and the agent grew by
17.1 MB with one window hosted.

    .venv/bin/python bench/lsp_hosting.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, emit

VARIANTS = {
    "bridge": "import socket, selectors, json, os",
    "agent host": "import sidecar.agent.server, sidecar.app",
    "agent host + language server": (
        "import sidecar.agent.server, sidecar.app\n"
        "from sidecar.server import build_server; build_server()"
    ),
    "language server": "from sidecar.server import build_server; build_server()",
}


def measure(code: str) -> tuple[float, float]:
    """(RSS MB, ms until ready) of one fresh interpreter running `code`."""
    script = code + "\nimport sys, time\nsys.stdout.write('ready\\n'); sys.stdout.flush()\n"
    script += "time.sleep(60)\n"
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        took = (time.perf_counter() - began) * 1000
        status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        rss_kb = int(next(line for line in status if line.startswith("VmRSS:")).split()[1])
    finally:
        proc.kill()
        proc.wait()
    return rss_kb / 1024, took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for name, code in VARIANTS.items():
        runs = [measure(code) for _ in range(args.runs)]
        results[name] = {
            "rss_mb": round(statistics.median(r[0] for r in runs), 1),
            "ready_ms": round(statistics.median(r[1] for r in runs)),
        }
    once = results["agent host + language server"]["rss_mb"] - results["agent host"]["rss_mb"]
    results["per_window"] = {
        "thin_client_mb": results["language server"]["rss_mb"],
        "hosted_mb": results["bridge"]["rss_mb"],
        "hosted_once_mb": round(once, 1),
    }
    rows: list[list[object]] = [
        [name, f"{r['rss_mb']} MB", f"{r['ready_ms']} ms"]
        for name, r in results.items()
        if name != "per_window"
    ]
    rows.append(["per window: thin / hosted", f"{results['language server']['rss_mb']} MB",
                 f"{results['bridge']['rss_mb']} MB (+{once:.1f} MB once)"])  # fmt: skip
    emit("lsp_hosting", results, rows, headers=("process", "RSS", "ready"))


if __name__ == "__main__":
    main()
