"""Idle stop on the embedded local machine, with a short check interval (ORCH_IDLE_INTERVAL).

The agent runs for real on the machine (shipped and started by `orch up`); these tests only
change what happens on the machine and watch `orch status` and the server process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import select
import shlex
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.app import Orchestrator
from tests.helpers import free_port, run_orch, stop_pid

pytestmark = pytest.mark.integration

INTERVAL = 0.3
TIMEOUT = 4.0  # idle_stop; the warning starts at TIMEOUT / 2
SLACK = 2.5  # process start-up and scheduling on a busy shared machine


@pytest.fixture
async def orch(
    orch_home: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Orchestrator]:
    monkeypatch.setenv("ORCH_IDLE_INTERVAL", str(INTERVAL))
    (project / "orch.toml").write_text(
        f'[machines.local]\nkind = "local"\nidle_stop = "{TIMEOUT:g}s"\n'
    )
    orch = Orchestrator(cwd=project)
    info = await orch.up()
    assert info.state == "running"
    try:
        yield orch
    finally:
        with contextlib.suppress(Exception):
            await orch.jobs_stop("busy")
        await orch.close()
        await orch.down()
        home = orch_home / "machines" / "local" / "home"
        pid_file = home / ".orch" / "idle" / "agent.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            if b"orch_idle_agent" in _cmdline(pid):
                stop_pid(pid)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def machine_home(orch: Orchestrator) -> Path:
    return orch.layout.machine_dir("local") / "home"


async def wait_stopped(orch: Orchestrator, limit: float) -> float:
    """Seconds until the local machine is stopped (fails after `limit`)."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        if (await orch.machine_status()).state == "stopped":
            return time.monotonic() - began
        await asyncio.sleep(0.1)
    log = (machine_home(orch) / ".orch" / "idle.log").read_text()[-2000:]
    raise AssertionError(f"still running after {limit} s; idle.log:\n{log}")


async def stays_up(orch: Orchestrator, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert (await orch.machine_status()).state == "running", idle_log(orch)[-5:]
        await asyncio.sleep(0.2)


def idle_log(orch: Orchestrator) -> list[dict[str, object]]:
    text = (machine_home(orch) / ".orch" / "idle.log").read_text()
    return [json.loads(line) for line in text.splitlines()]


async def test_idle_machine_warns_then_stops_within_the_timeout(orch: Orchestrator) -> None:
    began = time.monotonic()
    seen: list[str] = []
    warned_at = None
    while (await asyncio.wait_for(orch.machine_status(), 10)).state == "running":
        # A read in flight when the agent stops the machine hung once in CI (300 s, not
        # reproduced since; see docs/idle.md): bound each read, the machine's state decides.
        try:
            status = await asyncio.wait_for(orch.status(), 1.5)
        except TimeoutError:
            seen.append("read-timeout")
            continue
        if status.idle:
            seen.append(status.idle.action)
            if status.idle.action == "warn" and warned_at is None:
                warned_at = time.monotonic() - began
                assert "stops in" in status.idle.line, status.idle
                assert status.idle.line.startswith("idle ")
        assert time.monotonic() - began < TIMEOUT + INTERVAL + SLACK, seen
        await asyncio.sleep(0.1)
    stopped = time.monotonic() - began
    assert warned_at is not None and warned_at < stopped, seen
    assert TIMEOUT - 0.5 <= stopped <= TIMEOUT + INTERVAL + SLACK
    log = idle_log(orch)
    assert [e["action"] for e in log if e["action"] == "stop"] == ["stop"]
    assert log[-1]["action"] == "stopping" and "SIGTERM" in str(log[-1]["reason"])
    assert all("signals" in e for e in log if e["action"] in ("keep", "warn", "stop"))
    await asyncio.sleep(INTERVAL * 3)  # the agent's work is over once the server is gone
    pid = int((machine_home(orch) / ".orch" / "idle" / "agent.pid").read_text())
    assert b"orch_idle_agent" not in _cmdline(pid)


async def test_cli_status_json_shows_the_warning(orch: Orchestrator, project: Path) -> None:
    await asyncio.sleep(TIMEOUT / 2 + INTERVAL)
    result = run_orch("status", "--json", cwd=project, env={"ORCH_IDLE_INTERVAL": str(INTERVAL)})
    assert result.returncode == 0, result.stderr
    idle = json.loads(result.stdout)["idle"]
    assert idle["action"] == "warn" and idle["stop_hook"] == "signal", idle
    assert idle["line"].startswith("idle ") and " · stops in " in idle["line"]
    human = run_orch("idle", "status", cwd=project)
    assert "stops in" in human.stdout or "stopped" in human.stdout, human


async def test_keep_resets_the_timer(orch: Orchestrator) -> None:
    await asyncio.sleep(TIMEOUT / 2 + INTERVAL * 2)
    before = await orch.idle_status()
    assert before is not None and before.action == "warn", before
    await orch.idle_keep()
    await asyncio.sleep(INTERVAL * 3)
    after = await orch.idle_status()
    assert after is not None and after.action == "keep", after
    assert after.idle_s < before.idle_s
    assert any("orch idle keep" in str(e["reason"]) for e in idle_log(orch))
    await wait_stopped(orch, TIMEOUT + INTERVAL + SLACK)  # and then it stops after all


async def test_a_running_job_keeps_it_up(orch: Orchestrator) -> None:
    await orch.jobs_run("busy", "sleep 60", snapshot=False)
    await stays_up(orch, TIMEOUT * 2)
    assert any("job(s) running" in str(e["reason"]) for e in idle_log(orch)[-3:])
    await orch.jobs_stop("busy")
    await wait_stopped(orch, TIMEOUT + INTERVAL + SLACK)


async def test_sync_every_interval_keeps_it_up(orch: Orchestrator, project: Path) -> None:
    (project / "a.py").write_text("x = 0\n")
    deadline = time.monotonic() + TIMEOUT * 2
    n = 0
    while time.monotonic() < deadline:
        n += 1
        (project / "a.py").write_text(f"x = {n}\n")
        await orch.sync_now()
        assert (await orch.machine_status()).state == "running", idle_log(orch)[-5:]
        await asyncio.sleep(1.0)
    assert any("sync" in str(e["reason"]) for e in idle_log(orch)[-5:])
    await wait_stopped(orch, TIMEOUT + INTERVAL + SLACK)


async def test_orchs_own_connections_do_not_keep_it_up(orch: Orchestrator) -> None:
    """The pooled asyncssh connection, an OpenSSH ControlMaster and a port forward stay open
    the whole time, and the machine still stops on time."""
    target = await orch.ssh_target()
    await orch.pool.connection(target)  # the pool's connection stays open
    master = await asyncio.create_subprocess_exec(
        *(await orch.ssh_argv(None, ["true"])), stdout=asyncio.subprocess.DEVNULL
    )
    assert await master.wait() == 0  # leaves the ControlPersist master behind
    forwarded = free_port()
    await orch.ports_add(forwarded, 22)  # the forwarder process, idle
    began = time.monotonic()
    took = await wait_stopped(orch, TIMEOUT + INTERVAL + SLACK)
    assert took <= TIMEOUT + INTERVAL + SLACK
    assert time.monotonic() - began >= 0


def _type_into(argv: list[str], seconds: float, every: float) -> bytes:
    """Run argv on a terminal and type a harmless key every `every` seconds."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm"
        os.execvp(argv[0], argv)
    out = b""
    deadline = time.monotonic() + seconds
    typed = 0.0
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):
                    out += os.read(fd, 65536)
            if time.monotonic() - typed > every:
                os.write(fd, b" ")
                typed = time.monotonic()
        return out
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        os.close(fd)


async def test_an_attached_tmux_session_with_input_keeps_it_up(orch: Orchestrator) -> None:
    from remote_config.job_sh import SOCKET

    new = f'{SOCKET}; mkdir -p "${{S%/*}}"; tmux -S "$S" new-session -d -s play "sleep 300"'
    target = await orch.ssh_target()
    assert (await orch.pool.run(target, new)).exit_status == 0
    script = f'{SOCKET}; exec tmux -S "$S" attach -t play'
    attach = await orch.ssh_argv(None, ["sh", "-c", shlex.quote(script)], tty=True)
    task = asyncio.create_task(asyncio.to_thread(_type_into, attach, TIMEOUT * 2, 0.5))
    await stays_up(orch, TIMEOUT * 2 - 0.5)
    screen = await task
    assert b"sleep" in screen or b"play" in screen, screen[-300:]
    reasons = " ".join(str(e["reason"]) for e in idle_log(orch)[-5:])
    assert "orch attach" in reasons, reasons
    await orch.pool.run(target, f'{SOCKET}; tmux -S "$S" kill-session -t play')
    await wait_stopped(orch, TIMEOUT + INTERVAL + SLACK)


async def test_vscode_server_traffic_keeps_it_up(orch: Orchestrator) -> None:
    """A process under ~/.vscode-server moving bytes counts; the same process silent does not."""
    home = machine_home(orch)
    server = home / ".vscode-server" / "bin" / "fake" / "server.py"
    server.parent.mkdir(parents=True)
    flag = home / "traffic"
    flag.write_text("on")
    server.write_text(
        "import os, time\n"
        "while True:\n"
        "    if open(os.path.expanduser('~/traffic')).read() == 'on':\n"
        "        with open(os.devnull, 'wb') as f: f.write(b'x' * 200_000)\n"
        "    time.sleep(0.1)\n"
    )
    target = await orch.ssh_target()
    start = f"nohup python3 {shlex.quote(str(server))} >/dev/null 2>&1 </dev/null & echo $!"
    pid = int((await orch.pool.run(target, start)).stdout.strip())
    try:
        await stays_up(orch, TIMEOUT * 2)
        assert any("vscode traffic" in str(e["reason"]) for e in idle_log(orch)[-3:])
        flag.write_text("off")  # the server still runs, but quietly
        await wait_stopped(orch, TIMEOUT + INTERVAL + SLACK)
    finally:
        stop_pid(pid)


async def test_up_restarts_a_dead_agent_and_debug_marks_activity(orch: Orchestrator) -> None:
    from sidecar.idle.service import touch_activity

    pid_file = machine_home(orch) / ".orch" / "idle" / "agent.pid"
    first = int(pid_file.read_text())
    os.kill(first, signal.SIGKILL)
    await asyncio.sleep(0.3)
    info = await orch.up()  # the machine runs already; only the agent is started again
    assert info.state == "running"
    second = int(pid_file.read_text())
    assert second != first and b"orch_idle_agent" in _cmdline(second)
    await asyncio.sleep(TIMEOUT / 2 + INTERVAL * 2)
    await touch_activity(orch.context())  # what debug start / attach do
    await asyncio.sleep(INTERVAL * 3)
    status = await orch.idle_status()
    assert status is not None and status.action == "keep", status
    assert "debug session" in status.reason


async def test_turning_idle_stop_off_retires_the_agent(orch: Orchestrator, project: Path) -> None:
    pid = int((machine_home(orch) / ".orch" / "idle" / "agent.pid").read_text())
    (project / "orch.toml").write_text('[machines.local]\nkind = "local"\nidle_stop = "off"\n')
    orch.reload_config()
    await orch.up()
    await asyncio.sleep(INTERVAL * 4)
    assert b"orch_idle_agent" not in _cmdline(pid)
    assert await orch.idle_status() is None
    await stays_up(orch, TIMEOUT + INTERVAL * 2)
