"""Round trip of a trivial remote command (`true`): orch's pool vs OpenSSH, same run.

Three ways, on the same machine: the sidecar's pooled asyncssh connection, the real `ssh`
client through orch's managed config with its ControlMaster already up, and a cold `ssh`
(new TCP connection, key exchange and login every time). Measured against a real OpenSSH
sshd on 127.0.0.1 (needs root and the orch-test user, see scripts/setup.sh) and against the
embedded local machine. Goal: pooled p50 <= 5 ms, >= 30x faster than cold ssh.

Run: .venv/bin/python bench/ssh_roundtrip.py [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, summary_ms, time_calls


async def _pooled(orch: object, n: int) -> list[float]:
    target = await orch.ssh_target()  # type: ignore[attr-defined]
    pool = orch.pool  # type: ignore[attr-defined]
    for _ in range(5):
        await pool.run(target, "true")
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        result = await pool.run(target, "true")
        samples.append(time.perf_counter() - started)
        assert result.exit_status == 0
    return samples


def _ssh(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)


async def measure(project: Path, n: int, cold_n: int) -> dict[str, dict[str, float]]:
    from sidecar.app import Orchestrator

    orch = Orchestrator(cwd=project)
    try:
        await orch.up()
        target = await orch.ssh_target()
        config = str(await orch.write_ssh_config())
        pooled = await _pooled(orch, n)
        master = ["ssh", "-F", config, target.alias, "true"]
        _ssh(master)  # starts the master (ControlPersist keeps it)
        through_master = time_calls(lambda: _ssh(master), max(n // 4, 20))
        cold = [
            "ssh", "-F", config, "-o", "ControlMaster=no", "-o", "ControlPath=none",
            target.alias, "true",
        ]  # fmt: skip
        cold_samples = time_calls(lambda: _ssh(cold), cold_n, warmup=1)
        subprocess.run(["ssh", "-F", config, "-O", "exit", target.alias], capture_output=True)
        await orch.down()
    finally:
        await orch.close()
    return {
        "pool": summary_ms(pooled),
        "controlmaster": summary_ms(through_master),
        "cold_ssh": summary_ms(cold_samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--cold-n", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="orch-bench-ssh-"))
    os.environ["ORCH_HOME"] = str(work / "home")
    results: dict[str, dict[str, dict[str, float]]] = {}
    sshd = None
    try:
        local = work / "local"
        local.mkdir()
        results["local_machine"] = asyncio.run(measure(local, args.n, args.cold_n))
        from tests.helpers import make_sshd, sshd_available

        if sshd_available() is None:
            folder = Path(tempfile.mkdtemp(prefix="orch-bench-sshd-"))
            folder.chmod(0o755)
            sshd = make_sshd(folder)
            (folder / "authorized_keys").chmod(0o644)
            box = work / "box"
            box.mkdir()
            (box / "orch.toml").write_text(
                '[project]\ndefault_machine = "box"\n' + sshd.machine_toml()
            )
            results["openssh_sshd"] = asyncio.run(measure(box, args.n, args.cold_n))
    finally:
        if sshd is not None:
            sshd.stop()
            shutil.rmtree(sshd.folder, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    rows: list[list[object]] = []
    for server, res in results.items():
        pool_p50 = res["pool"]["p50_ms"]
        speedup = res["cold_ssh"]["p50_ms"] / pool_p50
        rows += [
            [f"{server}: pool p50", f"{pool_p50:.2f} ms", "<= 5 ms", pool_p50 <= 5],
            [f"{server}: ControlMaster p50", f"{res['controlmaster']['p50_ms']:.2f} ms", "", ""],
            [f"{server}: cold ssh p50", f"{res['cold_ssh']['p50_ms']:.2f} ms", "", ""],
            [f"{server}: cold / pool", f"{speedup:.0f}x", ">= 30x", speedup >= 30],
        ]
        res["speedup_vs_cold"] = {"x": round(speedup, 1)}
    emit("ssh_roundtrip", results, rows)


if __name__ == "__main__":
    main()
