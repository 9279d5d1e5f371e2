"""Time from `orch debug` to the first breakpoint hit, against doing it by hand.

On the embedded local machine, three ways to get a remote Python script stopped at a
breakpoint set by its local path, each repeated N times in the same run:
  - warm: inside a running sidecar (open connection): `Orchestrator.debug_start` + attach;
  - cli:  a fresh `orch debug NAME -- python3 script.py` process + attach;
  - manual: what the design brief did by hand: a cold `ssh -L` forward running
    `python -m debugpy --listen … --wait-for-client script.py`, then attach.
Each attach is the same DAP handshake (initialize, attach with pathMappings, setBreakpoints,
configurationDone) ending at the `stopped` event.

    .venv/bin/python bench/debug.py
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, orch_env, summary_ms
from remote_config import job_scripts as js
from remote_config.launch_json import attach_configuration
from sidecar.app import Orchestrator
from sidecar.debug.dap import INITIALIZE, DAPClient, attach_and_break

N = 8
SCRIPT = "def f(n):\n    x = n * 2\n    return x\n\n\nprint(f(21))\n"


async def stop_at_breakpoint(port: int, config: dict, source: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            client = await DAPClient.connect("127.0.0.1", port)
        except OSError:  # the forward is not listening yet (ssh -L still connecting)
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)
            continue
        try:
            await client.request("initialize", INITIALIZE, timeout=2)
            break
        except (ConnectionError, TimeoutError, RuntimeError):
            await client.close()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)
    try:
        stop = await attach_and_break(client, config, source, 2)
        assert stop["frame"]["line"] == 2, stop
        await client.request("continue", {"threadId": stop["stopped"]["body"]["threadId"]})
    finally:
        await client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def main_async(tmp: Path) -> dict:
    project = tmp / "proj"
    project.mkdir()
    (project / "script.py").write_text(SCRIPT)
    (project / "orch.toml").write_text('[debug]\npython = "python3"\n')
    source = str(project / "script.py")
    orch = Orchestrator(cwd=project)
    await orch.up()
    await orch.host_forward_owner()  # as the sidecar does: forwards live in this process
    await orch.sync_now()
    target = await orch.ssh_target()
    warm, cli, manual = [], [], []
    try:
        await orch.debug_start("warmup", ["python3", "script.py"])  # ships debugpy once
        for i in range(N):
            started = time.perf_counter()
            session = await orch.debug_start(f"w{i}", ["python3", "script.py"])
            await stop_at_breakpoint(session.local_port, session.configuration, source)
            warm.append(time.perf_counter() - started)
            await orch.ports_remove(session.local_port)

        env = orch_env()
        for i in range(N):
            started = time.perf_counter()
            # Async: this process owns the forwards, and the CLI asks it to add one.
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "sidecar.cli.main",
                "debug",
                f"c{i}",
                "--json",
                "--",
                "python3",
                "script.py",
                cwd=project,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"orch debug failed: {stderr.decode()}")
            session = json.loads(stdout)
            await stop_at_breakpoint(session["local_port"], session["configuration"], source)
            cli.append(time.perf_counter() - started)
            await orch.ports_remove(session["local_port"])

        remote_root = str(orch.provider().home / "work" / "proj")  # type: ignore[attr-defined]
        version = __import__("debugpy").__version__
        pythonpath = str(orch.provider().home / ".orch" / "debugpy" / version)  # type: ignore
        for _ in range(N):
            local, remote = free_port(), free_port()
            started = time.perf_counter()
            proc = subprocess.Popen(
                [
                    "ssh",
                    "-F",
                    str(orch.layout.ssh_config),
                    "-o",
                    "ControlMaster=no",
                    "-o",
                    "ControlPath=none",
                    "-L",
                    f"127.0.0.1:{local}:127.0.0.1:{remote}",
                    target.alias,
                    f"cd {remote_root} && PYTHONPATH={pythonpath} python3 -m debugpy "
                    f"--listen 127.0.0.1:{remote} --wait-for-client script.py",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            config = attach_configuration("manual", local, str(project), remote_root)
            try:
                await stop_at_breakpoint(local, config, source)
                manual.append(time.perf_counter() - started)
                proc.wait(timeout=30)
            finally:  # never leave the hand-started debugpy (or its ssh) behind
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                await orch.pool.run(target, f"pkill -f 'debugpy --listen 127.0.0.1:{remote} '")
    finally:
        await orch.pool.run(target, "sh -s", input=js.reset_script(), timeout=30)
        for port in (await orch.ports_list()).ports:
            if port.state == "active":
                await orch.ports_remove(port.local_port)
        await orch.close()
        await orch.down()
    return {"warm": summary_ms(warm), "cli": summary_ms(cli), "manual": summary_ms(manual)}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="orch-bench-debug-") as tmp:
        os.environ["ORCH_HOME"] = str(Path(tmp) / "home")
        results = asyncio.run(main_async(Path(tmp)))
    w, c, m = results["warm"], results["cli"], results["manual"]
    results["manual_over_warm"] = round(m["p50_ms"] / w["p50_ms"], 2)
    results["manual_over_cli"] = round(m["p50_ms"] / c["p50_ms"], 2)
    emit(
        "debug",
        results,
        [
            ["orch debug → breakpoint, warm sidecar p50", f"{w['p50_ms']:.0f} ms", "", ""],
            ["orch debug → breakpoint, CLI p50", f"{c['p50_ms']:.0f} ms", "", ""],
            ["by hand (cold ssh -L + debugpy) p50", f"{m['p50_ms']:.0f} ms", "(baseline)", ""],
            ["by hand / warm", f"{results['manual_over_warm']}x", "", ""],
        ],
    )


if __name__ == "__main__":
    main()
