"""The laptop side's memory: RSS and PSS of every orch process on this computer.

Sets up what a working day looks like: the embedded local machine up, a sync watching a
20,000-file tree, two port forwards and the language server open on the project. Then it
finds every process that runs with this run's `$ORCH_HOME` (read from `/proc/PID/environ`,
so nothing is missed or guessed) and reports each one's RSS and PSS (`smaps_rollup`), idle
and again after `--edit-s` seconds of edits (a file rewritten every 200 ms, each synced).

The naive alternative in the same run is a bare interpreter (`python -c` that sleeps): its
RSS is the floor every Python process pays. Issue 20's goal: the whole laptop side (agent +
sidecar, the local machine server apart) <= 120 MB RSS.

    .venv/bin/python bench/footprint.py [--files 20000] [--edit-s 60] [--label before]
        [--source DIR] [--save out.json] [--before out-of-an-earlier-run.json ...]

`--source` runs another checkout's orch (say main's, or the one before the agent) with this
script; `--in-window` runs the language server in the window's own process
(`ORCH_LSP_HOSTED=0`, as before issue 20 hosted it in the agent: the same code's "before");
`--save` keeps this run's JSON; `--before` (repeatable) puts earlier runs' figures
beside this one's in the table (one table, before and after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, emit, orch_env

LOCAL_MACHINE = "local machine server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def role(cmdline: list[str]) -> str | None:
    """What an orch process is, from its command line (None: not a Python orch process)."""
    if not cmdline or "python" not in Path(cmdline[0]).name:
        return None
    text = " ".join(cmdline)
    for needle, name in (
        ("sidecar.agent", "agent"),
        ("sidecar.sync.daemon", "sync process"),
        ("sidecar.ssh.forwarder", "port forwarder"),
        ("sidecar.machines.local", LOCAL_MACHINE),
        ("-m sidecar", "sidecar (window: bridge, or its own server)"),
    ):
        if needle in text:
            return name
    return None


def memory_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


def orch_processes(home: str) -> list[dict[str, Any]]:
    """Every Python orch process whose environment names this run's ORCH_HOME."""
    found = []
    marker = f"ORCH_HOME={home}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            cmdline = (entry / "cmdline").read_bytes().decode().split("\0")
            name = role([c for c in cmdline if c])
            if name is None:
                continue
            rss, pss = memory_kb(int(entry.name))
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
        found.append({"role": name, "pid": int(entry.name), "rss_kb": rss, "pss_kb": pss})
    return sorted(found, key=lambda p: (p["role"], p["pid"]))


def totals(procs: list[dict[str, Any]]) -> dict[str, int]:
    laptop = [p for p in procs if p["role"] != LOCAL_MACHINE]
    return {
        "rss_kb": sum(p["rss_kb"] for p in procs),
        "pss_kb": sum(p["pss_kb"] for p in procs),
        "laptop_rss_kb": sum(p["rss_kb"] for p in laptop),  # without the local machine
        "laptop_pss_kb": sum(p["pss_kb"] for p in laptop),
        "processes": len(procs),
    }


def make_tree(root: Path, files: int) -> None:
    per_dir = 100
    for i in range(files):
        folder = root / "src" / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i % per_dir:03d}.py").write_text(f"# file {i}\nVALUE = {i}\n")


async def open_sidecar(project: Path, env: dict[str, str]) -> Any:
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    client = LanguageClient("orch-footprint", "1")
    await client.start_io(sys.executable, "-m", "sidecar", cwd=str(project), env=env)
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            root_uri=project.as_uri(),
            initialization_options={"machine": None, "logLevel": "warning", "clientName": "bench"},
        )
    )
    client.initialized(types.InitializedParams())
    return client


def baseline_kb() -> tuple[int, int]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        return memory_kb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="orch-footprint-") as tmp:
        home = os.path.join(tmp, "home")
        env = orch_env(
            ORCH_HOME=home, PYDANTIC_DISABLE_PLUGINS="__all__", PYTHONPATH=str(args.source)
        )
        if args.in_window:
            env["ORCH_LSP_HOSTED"] = "0"
        project = Path(tmp) / "proj"
        project.mkdir()
        make_tree(project, args.files)
        orch = [sys.executable, "-m", "sidecar.cli.main"]

        def run(*argv: str) -> str:
            done = subprocess.run(
                [*orch, *argv], env=env, cwd=project, capture_output=True, text=True, timeout=600
            )
            if done.returncode != 0:
                raise SystemExit(f"orch {' '.join(argv)} failed: {done.stderr or done.stdout}")
            return done.stdout

        run("up")
        client = None
        try:
            started = time.perf_counter()
            run("sync", "start")
            initial_sync_s = time.perf_counter() - started
            for _ in range(2):
                run("ports", "add", f"{free_port()}:{free_port()}")
            client = await open_sidecar(project, env)
            await asyncio.sleep(args.settle_s)
            idle = orch_processes(home)
            edits = 0
            deadline = time.monotonic() + args.edit_s
            while time.monotonic() < deadline:
                target = project / "src" / f"d{edits % 50:04d}" / "f000.py"
                target.write_text(f"# edit {edits}\nVALUE = {edits}\n")
                edits += 1
                await asyncio.sleep(0.2)
            await asyncio.sleep(args.settle_s)
            edited = orch_processes(home)
        finally:
            if client is not None:
                await client.shutdown_async(None)
                client.exit(None)
                await client.stop()
            subprocess.run([*orch, "sync", "stop"], env=env, cwd=project, capture_output=True)
            subprocess.run([*orch, "down", "--force"], env=env, cwd=project, capture_output=True)
            agent = [sys.executable, "-m", "sidecar.agent", "stop"]
            subprocess.run(agent, env=env, cwd=project, capture_output=True)
    floor_rss, floor_pss = baseline_kb()
    return {
        "label": args.label,
        "source": str(args.source),
        "files": args.files,
        "edit_s": args.edit_s,
        "edits": edits,
        "initial_sync_s": round(initial_sync_s, 2),
        "bare_python": {"rss_kb": floor_rss, "pss_kb": floor_pss},
        "idle": {"processes": idle, "totals": totals(idle)},
        "after_edits": {"processes": edited, "totals": totals(edited)},
    }


def mb(kb: int | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.1f}"


def table(runs: list[dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for run in runs:
        for phase in ("idle", "after_edits"):
            for p in run[phase]["processes"]:
                rows.append([run["label"], phase, p["role"], mb(p["rss_kb"]), mb(p["pss_kb"])])
            t = run[phase]["totals"]
            rows.append([run["label"], phase, f"ALL ({t['processes']})", mb(t["rss_kb"]),
                         mb(t["pss_kb"])])  # fmt: skip
            rows.append([run["label"], phase, "laptop side w/o local machine",
                         mb(t["laptop_rss_kb"]), mb(t["laptop_pss_kb"])])  # fmt: skip
        floor = run["bare_python"]
        rows.append([run["label"], "-", "bare python (floor)", mb(floor["rss_kb"]),
                     mb(floor["pss_kb"])])  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--edit-s", type=float, default=60.0)
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument("--label", default="now")
    parser.add_argument("--in-window", action="store_true", help="ORCH_LSP_HOSTED=0")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--source", type=Path, default=REPO, help="the orch checkout to run")
    parser.add_argument(
        "--before", type=Path, action="append", default=[], help="an earlier run's --save file"
    )
    args = parser.parse_args()
    args.source = args.source.resolve()
    result = asyncio.run(measure(args))
    if args.save:
        args.save.write_text(json.dumps(result, indent=2))
    runs = [*(json.loads(path.read_text()) for path in args.before), result]
    emit(
        "footprint",
        {"runs": runs},
        table(runs),
        headers=("run", "phase", "process", "RSS MB", "PSS MB"),
    )


if __name__ == "__main__":
    main()
