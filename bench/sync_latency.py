"""Sync latency: a one-file edit in a 20,000-file tree until the new content is on the remote.

Runs against a real OpenSSH sshd on 127.0.0.1 (needs root and the orch-test user that
scripts/setup.sh creates). In the same run it measures the naive loop (full-tree
`rsync -az --delete` per change, a new SSH connection each time), plain rsync through
ControlMaster, the initial sync of 2,000 files / 50 MB and of 20,000 files of 300 bytes
against plain `rsync -a` (goal <= 1.2x both), the helper-vs-rsync crossover used by
`choose_transport`, and the cost of a job snapshot. Every remote folder it uses is its own
(`~/work/bench<pid>-*`) and is the only thing it removes.

.venv/bin/python bench/sync_latency.py [--edits 60] [--files 20000] [--initial-only] [--rounds N]
    [--remote-base /dev/shm]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.pop(0)  # this folder: its queue.py would shadow the stdlib's `queue`
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, summary_ms

TAG = f"bench{os.getpid()}"  # this run's remote folders (the sshd user is shared with tests)


def make_tree(root: Path, files: int, size: int, seed: int = 1) -> list[Path]:
    rng = random.Random(seed)
    out = []
    for i in range(files):
        folder = root / f"pkg{i % 100}" / f"sub{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"f{i}.py"
        path.write_bytes(rng.randbytes(size))
        out.append(path)
    return out


def wait_content(path: Path, data: bytes, timeout: float = 10.0) -> float:
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        try:
            if path.read_bytes() == data:
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.0003)
    raise TimeoutError(f"{path} never got the new content")


def orch(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli.main", "-C", str(project), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=True,
    )


def naive_ssh(sshd, known: Path) -> str:
    return (
        f"ssh -F /dev/null -o ControlMaster=no -o BatchMode=yes -o StrictHostKeyChecking=yes "
        f"-o UserKnownHostsFile={known} -i {sshd.client_key} -p {sshd.port}"
    )


def rsync_loop(
    local: Path, dest: str, ssh: str, remote: Path, files: list[Path], n: int, flags: list[str]
) -> list[float]:
    subprocess.run(["rsync", *flags, "-e", ssh, f"{local}/", dest], check=True)
    rng = random.Random(7)
    samples = []
    for i in range(n):
        target = rng.choice(files)
        data = f"naive {i} {time.time()}".encode()
        target.write_bytes(data)
        started = time.perf_counter()
        subprocess.run(["rsync", *flags, "-e", ssh, f"{local}/", dest], check=True)
        done = wait_content(remote / target.relative_to(local), data)
        samples.append(done - started)
    return samples


def edit_latency(project: Path, remote: Path, files: list[Path], n: int) -> list[float]:
    rng = random.Random(3)
    samples = []
    for i in range(n + 3):
        target = rng.choice(files)
        data = f"edit {i} {time.time()}\n".encode() * 20
        started = time.perf_counter()
        target.write_bytes(data)
        done = wait_content(remote / target.relative_to(project), data)
        if i >= 3:  # warm-up edits are not counted
            samples.append(done - started)
        time.sleep(0.05)  # separate edits, as a person typing and saving would
    return samples


async def initial_sync(
    project: Path, rounds: int, sshd_home: Path, base: str = ""
) -> dict[str, list[float]]:
    """Initial sync of `project` by orch (no sync state) and by plain `rsync -a` into a
    fresh folder, through the same ControlMaster, in turn in the same run.

    Before each timed copy both folders are removed and `sync` run (outside the clock), so
    neither copy pays for the other's pending disk writes; the two take turns going first.
    `base`: an absolute remote folder (a tmpfs) holding both copies instead of the home."""
    from sidecar.app import Orchestrator
    from sidecar.sync.service import state_dir

    out: dict[str, list[float]] = {"orch": [], "rsync": []}
    phases = _PhaseLog()
    logging.getLogger("orch.sync").addHandler(phases)
    logging.getLogger("orch.sync").setLevel(logging.INFO)
    orch_obj = Orchestrator(cwd=project)
    await orch_obj.write_ssh_config()
    target = await orch_obj.ssh_target()
    cfg = str(orch_obj.layout.ssh_config)
    subprocess.run(["ssh", "-F", cfg, target.alias, "true"], check=True)  # warm ControlMaster
    mine = orch_obj.config.remote_dir.removeprefix("~/")
    await orch_obj.close()
    there = f"{mine}-rsync"  # next to orch's folder (in the home, or absolute under `base`)
    dest = Path(there) if base else sshd_home / there
    # The parent too: plain rsync creates only the last folder (tests may wipe ~/work).
    parent = os.path.dirname(mine) or "."
    # `sync`: the removal's writes land before the clock starts, not in the next copy.
    wipe = f"rm -rf {there} {mine} && mkdir -p {parent} && sync"

    async def plain() -> None:
        subprocess.run(["ssh", "-F", cfg, target.alias, wipe], check=True)
        started = time.perf_counter()
        argv = ["rsync", "-a", "-e", f"ssh -F {cfg}", f"{project}/", f"{target.alias}:{there}/"]
        subprocess.run(argv, check=True)
        out["rsync"].append(time.perf_counter() - started)
        assert dest.is_dir()

    async def by_orch() -> None:
        subprocess.run(["ssh", "-F", cfg, target.alias, wipe], check=True)
        orch_obj = Orchestrator(cwd=project)
        shutil.rmtree(state_dir(orch_obj.context()), ignore_errors=True)
        started = time.perf_counter()
        await orch_obj.sync_now()
        out["orch"].append(time.perf_counter() - started)
        await orch_obj.close()

    for i in range(rounds):
        for step in (plain, by_orch) if i % 2 == 0 else (by_orch, plain):
            await step()
    logging.getLogger("orch.sync").removeHandler(phases)
    for name, values in phases.by_name().items():
        out[f"phase: {name}"] = values
    return out


class _PhaseLog(logging.Handler):
    """Collects the engine's per-phase times (the `phases` of each full sync's log record)."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = getattr(record, "phases", None)
        if isinstance(found, dict):
            self.runs.append(found)

    def by_name(self) -> dict[str, list[float]]:
        names = dict.fromkeys(k for run in self.runs for k in run)
        return {n: [run.get(n, 0.0) for run in self.runs] for n in names}


async def crossover(project: Path) -> list[dict[str, object]]:
    """Helper (one round trip) vs rsync --files-from for batches of N files of S bytes."""
    from sidecar.app import Orchestrator
    from sidecar.sync.remote import RemoteHelper, run_rsync

    orch_obj = Orchestrator(cwd=project)
    target = await orch_obj.ssh_target()
    await orch_obj.write_ssh_config()
    helper = await RemoteHelper.start(await orch_obj.pool.connection(target))
    rows = []
    src = project / "xover"
    for count, size in (
        (1, 2000),
        (10, 2000),
        (100, 2000),
        (500, 2000),
        (2000, 2000),
        (1, 1 << 20),
        (4, 1 << 20),
        (4, 4 << 20),
        (4, 16 << 20),
    ):
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir()
        names = []
        for i in range(count):
            (src / f"x{i}").write_bytes(os.urandom(size))
            names.append(f"xover/x{i}")
        times = {"helper": [], "rsync": []}
        for _ in range(3):
            payloads = [(project / n).read_bytes() for n in names]
            ops = [
                {
                    "op": "put",
                    "path": n,
                    "size": size,
                    "mode": 0o644,
                    "mtime_ns": 1,
                    "hash": None,
                    "expect": None,
                }
                for n in names
            ]
            started = time.perf_counter()
            await helper.request({"root": "~/work/xover-h", "ops": ops}, payloads)
            times["helper"].append(time.perf_counter() - started)
            started = time.perf_counter()
            await run_rsync(
                str(orch_obj.layout.ssh_config), target.alias, str(project), "~/work/xover-r", names
            )
            times["rsync"].append(time.perf_counter() - started)
        rows.append(
            {
                "files": count,
                "bytes_each": size,
                "helper_ms": round(min(times["helper"]) * 1000, 1),
                "rsync_ms": round(min(times["rsync"]) * 1000, 1),
            }
        )
    helper.close()
    shutil.rmtree(src, ignore_errors=True)
    await orch_obj.close()
    return rows


async def snapshot_cost(project: Path) -> list[float]:
    from sidecar.app import Orchestrator

    orch_obj = Orchestrator(cwd=project)
    samples = []
    for i in range(5):
        (project / "pkg0" / "sub0" / f"snap{i}.py").write_text(str(i))
        orch_obj_sync = await orch_obj.sync_now()
        assert orch_obj_sync.generation
        started = time.perf_counter()
        await orch_obj.prepare_snapshot()
        samples.append(time.perf_counter() - started)
    await orch_obj.close()
    return samples


def _edits(work: Path, sshd: Any, known: Path, args: argparse.Namespace, results: dict) -> None:
    """Edit latency on the 20,000-file tree, against the naive loops."""
    big = work / "big"
    big.mkdir()
    (big / "orch.toml").write_text(
        '[project]\ndefault_machine = "box"\n'
        f'[sync]\nremote_dir = "~/work/{TAG}-big"\n' + sshd.machine_toml()
    )
    files = make_tree(big, args.files, 300)
    started = time.perf_counter()
    orch(big, "sync", "start")
    results["initial_sync_20k_s"] = round(time.perf_counter() - started, 2)
    remote = sshd.home / "work" / f"{TAG}-big"
    orch_lat = edit_latency(big, remote, files, args.edits)
    orch(big, "sync", "stop")
    naive = rsync_loop(
        big,
        f"{sshd.user}@127.0.0.1:work/{TAG}-naive/",
        naive_ssh(sshd, known),
        sshd.home / "work" / f"{TAG}-naive",
        files,
        args.naive_edits,
        ["-az", "--delete", "--exclude=orch.toml"],
    )
    cfg = work / "home" / "ssh" / "config"
    alias = "orch-big-box"
    plain_cm = rsync_loop(
        big,
        f"{alias}:work/{TAG}-cm/",
        f"ssh -F {cfg}",
        sshd.home / "work" / f"{TAG}-cm",
        files,
        args.naive_edits,
        ["-a", "--delete"],
    )
    results["edit_latency"] = {
        "orch": summary_ms(orch_lat),
        "naive_rsync": summary_ms(naive),
        "rsync_controlmaster": summary_ms(plain_cm),
    }


def _initial(work: Path, sshd: Any, results: dict, rounds: int = 0, base: str = "") -> None:
    """Initial sync of 2,000 files / 50 MB and of 20,000 x 300 B, orch vs plain rsync."""
    where = base or "~/work"
    init = work / "init"
    init.mkdir()
    (init / "orch.toml").write_text(
        '[project]\ndefault_machine = "box"\n'
        f'[sync]\nremote_dir = "{where}/{TAG}-init"\n' + sshd.machine_toml()
    )
    make_tree(init, 2000, 25 * 1024, seed=2)
    times = asyncio.run(initial_sync(init, rounds or 3, sshd.home, base))
    results["initial_sync_2000_files_50MB"] = _initial_summary(times)
    small = work / "small"
    small.mkdir()
    (small / "orch.toml").write_text(
        '[project]\ndefault_machine = "box"\n'
        f'[sync]\nremote_dir = "{where}/{TAG}-small"\n' + sshd.machine_toml()
    )
    make_tree(small, 20_000, 300, seed=3)
    times = asyncio.run(initial_sync(small, rounds or 2, sshd.home, base))
    results["initial_sync_20000_files_300B"] = _initial_summary(times)


def _initial_summary(times: dict[str, list[float]]) -> dict[str, Any]:
    """Per-series summaries, plus orch/rsync per round (both ran back to back in each round,
    so a round slowed by other work on the machine slows both: the steadier figure here)."""
    out: dict[str, Any] = {k: summary_ms(v) for k, v in times.items()}
    ratios = sorted(o / r for o, r in zip(times["orch"], times["rsync"], strict=True))
    out["round_ratios"] = [round(x, 2) for x in ratios]
    out["round_ratio_p50"] = round(statistics.median(ratios), 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edits", type=int, default=60)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--naive-edits", type=int, default=10)
    parser.add_argument(
        "--initial-only", action="store_true", help="only the two initial-sync comparisons"
    )
    parser.add_argument("--rounds", type=int, default=0, help="initial-sync rounds (3 and 2)")
    parser.add_argument(
        "--remote-base",
        default="",
        help="absolute remote folder for the initial-sync copies (e.g. /dev/shm: a tmpfs, "
        "so a disk busy with other work slows neither copy); default ~/work",
    )
    args = parser.parse_args()
    from tests.helpers import make_sshd, sshd_available

    reason = sshd_available()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="orch-bench-sync-"))
    sshd_dir = Path(tempfile.mkdtemp(prefix="orch-bench-sshd-"))
    sshd_dir.chmod(0o755)
    os.environ["ORCH_HOME"] = str(work / "home")
    sshd = make_sshd(sshd_dir)
    (sshd_dir / "authorized_keys").chmod(0o644)
    known = sshd_dir / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_public_key}\n")
    results: dict[str, object] = {}
    try:
        if not args.initial_only:
            _edits(work, sshd, known, args, results)
        if args.remote_base:
            base = f"{args.remote_base.rstrip('/')}/{TAG}"
            subprocess.run(["install", "-d", "-o", sshd.user, "-m", "700", base], check=True)
        else:
            base = ""
        _initial(work, sshd, results, args.rounds, base)
        if not args.initial_only:
            init = work / "init"
            results["crossover"] = asyncio.run(crossover(init))
            results["snapshot_2000_files"] = summary_ms(asyncio.run(snapshot_cost(init)))
    finally:
        for project in (work / "big", work / "init", work / "small"):
            subprocess.run(
                [sys.executable, "-m", "sidecar.cli.main", "-C", str(project), "sync", "stop"],
                capture_output=True,
                env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])),
            )
        cfg = work / "home" / "ssh" / "config"
        if cfg.exists():
            for line in cfg.read_text().splitlines():
                if line.startswith("Host "):
                    subprocess.run(
                        ["ssh", "-F", str(cfg), "-O", "exit", line.split()[1]], capture_output=True
                    )
        sshd.stop()
        # Only what this run made: its remote folders and its projects' snapshots.
        subprocess.run(["sh", "-c", f"rm -rf {sshd.home}/work/{TAG}-*"])
        if args.remote_base:
            shutil.rmtree(f"{args.remote_base.rstrip('/')}/{TAG}", ignore_errors=True)
        for name in ("big", "init", "small"):
            subprocess.run(["rm", "-rf", str(sshd.home / ".orch" / "snapshots" / name)])
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sshd_dir, ignore_errors=True)

    init_r: Any = results["initial_sync_2000_files_50MB"]
    ratio = init_r["orch"]["p50_ms"] / init_r["rsync"]["p50_ms"]
    small_r: Any = results["initial_sync_20000_files_300B"]
    ratio_small = small_r["orch"]["p50_ms"] / small_r["rsync"]["p50_ms"]
    goals = {
        "initial_within_1_2x": ratio <= 1.2,
        "initial_small_within_1_2x": ratio_small <= 1.2,
    }
    rows: list[list[object]] = [
        ["initial 2k/50MB orch p50 (ms)", init_r["orch"]["p50_ms"], "", ""],
        ["initial 2k/50MB rsync p50 (ms)", init_r["rsync"]["p50_ms"], "", ""],
        ["initial ratio orch/rsync", round(ratio, 2), "<= 1.2", ratio <= 1.2],
        ["initial 20k/300B orch p50 (ms)", small_r["orch"]["p50_ms"], "", ""],
        ["initial 20k/300B rsync p50 (ms)", small_r["rsync"]["p50_ms"], "", ""],
        ["initial 20k ratio orch/rsync", round(ratio_small, 2), "<= 1.2", ratio_small <= 1.2],
        ["initial 2k/50MB ratio, median of rounds", init_r["round_ratio_p50"], "", ""],
        ["initial 20k/300B ratio, median of rounds", small_r["round_ratio_p50"], "", ""],
    ]
    for label, found in (("2k/50MB", init_r), ("20k/300B", small_r)):  # where orch's time goes
        rows += [
            [f"  {label} {k} p50 (ms)", v["p50_ms"], "", ""]
            for k, v in found.items()
            if k.startswith("phase: ")
        ]
    if not args.initial_only:
        lat: Any = results["edit_latency"]
        o, nv = lat["orch"], lat["naive_rsync"]
        speedup = nv["p50_ms"] / o["p50_ms"]
        goals |= {
            "p50_le_30ms": o["p50_ms"] <= 30,
            "p95_le_80ms": o["p95_ms"] <= 80,
            "10x_naive": speedup >= 10,
        }
        snap: Any = results["snapshot_2000_files"]
        rows = [
            ["orch edit p50 (ms)", o["p50_ms"], "<= 30", o["p50_ms"] <= 30],
            ["orch edit p95 (ms)", o["p95_ms"], "<= 80", o["p95_ms"] <= 80],
            ["naive rsync p50 (ms)", nv["p50_ms"], "", ""],
            ["rsync+ControlMaster p50 (ms)", lat["rsync_controlmaster"]["p50_ms"], "", ""],
            ["speed-up vs naive", round(speedup, 1), ">= 10x", speedup >= 10],
            *rows,
            ["snapshot 2k files p50 (ms)", snap["p50_ms"], "", ""],
            ["initial sync 20k files (s)", results["initial_sync_20k_s"], "", ""],
        ]
    results["goals"] = goals
    emit("sync_latency", results, rows)
    for row in results.get("crossover", []):  # type: ignore[attr-defined]
        print(f"  crossover {row}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
