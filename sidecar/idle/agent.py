"""The idle agent: a small stdlib-only program that runs ON the machine (works with the laptop
closed), checks every interval whether anything uses the machine, and stops it when idle.

orch copies this file, `probe.py` (as `orch_idle_probe.py`: the signals) and
`remote_config/idle.py` (as `orch_idle_decide.py`: the pure decision) to `~/.orch/idle/`
and starts it with `start`, a no-op while one runs (it holds `~/.orch/idle/agent.lock`).
Each check re-reads `config.json` (written by `orch up`: policy, stop hook, markers),
gathers the signals, asks `decide`, writes `state.json` (what `orch status` shows) and
appends the decision with its signals to `~/.orch/idle.log`; a kind's `notice_check` (EC2
spot: the 2-minute interruption notice) runs first and records a notice on the machine. On
"stop" it acts through the hook: `signal` (the local machine: SIGTERM its server, then
exit), `command` (a cloud kind's shutdown command) or `report` (ssh hosts: log only). The
clock (`--clock-file`) and the interval (`--interval`) are injectable for tests.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
try:  # on the machine: the shipped copy next to this file
    from orch_idle_decide import (
        Decision,
        IdlePolicy,
        IdleState,
        decide,
        initial_state,
    )
    from orch_idle_probe import gather
except ImportError:  # in orch's own checkout (tests)
    from remote_config.idle import Decision, IdlePolicy, IdleState, decide, initial_state
    from sidecar.idle.probe import gather

LOG_MAX_BYTES = 1 << 20


class Agent:
    def __init__(self, home: Path, clock_file: Path | None = None) -> None:
        self.home = home
        self.dir = home / ".orch" / "idle"
        self.log_path = home / ".orch" / "idle.log"
        self.clock_file = clock_file
        self.state: IdleState | None = None
        self.probe_memory: dict[str, Any] = {}
        self.reported = False

    def now(self) -> float:
        if self.clock_file is not None:
            return float(self.clock_file.read_text().strip())
        return time.time()

    def config(self) -> dict[str, Any] | None:
        try:
            loaded = json.loads((self.dir / "config.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(loaded, dict):
            return None
        socket = self.dir / "tmux_socket"
        if not loaded.get("tmux_socket") and socket.exists():
            loaded["tmux_socket"] = socket.read_text().strip()
        return loaded

    def restore(self, now: float, config: dict[str, Any]) -> IdleState:
        """Continue the previous agent's idle clock after a restart (same machine start)."""
        started = float(config.get("started_at") or now)
        try:
            old = json.loads((self.dir / "state.json").read_text())
            if abs(float(old["started_at"]) - started) < 1 and old.get("idle_since"):
                return IdleState(started, float(old["idle_since"]), "before the agent restarted")
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return (
            IdleState(started, now, "agent start")
            if config.get("started_at")
            else (initial_state(now))
        )

    def check(self, config: dict[str, Any]) -> Decision:
        self.check_notices(config)
        now = self.now()
        if self.state is None:
            self.state = self.restore(now, config)
        policy = IdlePolicy(**config["policy"])
        signals = gather(self.home, config, self.probe_memory, now)
        decision, self.state = decide(self.state, signals, now, policy)
        self.record(now, decision, config)
        return decision

    def check_notices(self, config: dict[str, Any]) -> None:
        """Run the kind's interruption check (EC2 spot: the metadata service's 2-minute
        notice), which records a notice on the machine for the job status to show."""
        command = config.get("notice_check")
        if not command:
            return
        # A slow or missing metadata service must not stop the idle checks.
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["sh", "-c", str(command)], capture_output=True, timeout=10, check=False)

    def record(self, now: float, decision: Decision, config: dict[str, Any]) -> None:
        state = {
            "pid": os.getpid(),
            "checked_at": now,
            "started_at": self.state.started_at if self.state else now,
            "action": decision.action,
            "reason": decision.reason,
            "rule": decision.rule,
            "idle_s": round(decision.idle_s, 1),
            "idle_since": decision.idle_since,
            "stops_at": decision.stops_at,
            "stop_hook": config.get("hook", {}).get("kind", "report"),
            "interval_s": config["policy"].get("interval_s"),
            "signals": decision.signals,
        }
        _atomic_json(self.dir / "state.json", state)
        line = {"t": now, "action": decision.action, "reason": decision.reason}
        line["signals"] = decision.signals
        self.log(line)

    def log(self, entry: dict[str, Any]) -> None:
        try:
            if self.log_path.exists() and self.log_path.stat().st_size > LOG_MAX_BYTES:
                os.replace(self.log_path, self.log_path.with_name("idle.log.1"))
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as out:
                out.write(json.dumps(entry, sort_keys=True) + "\n")
        except OSError:
            pass  # a full disk must not stop the checks

    def act(self, decision: Decision, config: dict[str, Any]) -> bool:
        """Run the stop hook; True when the agent's work is over (the machine is going away)."""
        hook = config.get("hook") or {"kind": "report"}
        kind = hook.get("kind", "report")
        if kind == "signal":
            pid = int(hook.get("pid", 0))
            if not _process_matches(pid, str(hook.get("match", ""))):
                self.log({"t": self.now(), "action": "exit", "reason": "the server is gone"})
                return True
            self.log({"t": self.now(), "action": "stopping", "reason": f"SIGTERM to {pid}"})
            os.kill(pid, signal.SIGTERM)
            return True
        if kind == "command":
            argv = [str(a) for a in hook.get("argv", [])]
            self.log({"t": self.now(), "action": "stopping", "reason": " ".join(argv)})
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
            if done.returncode != 0:
                self.log({"t": self.now(), "action": "error", "reason": done.stderr[-500:]})
                return False
            return True
        if not self.reported:  # report only: say it once per idle period
            self.log({"t": self.now(), "action": "report", "reason": "would stop (report only)"})
            self.reported = True
        return False

    def run(self, interval: float | None, once: bool = False) -> int:
        if not once:  # SIGUSR1 (`orch idle keep`) ends the wait: check now, not in a minute
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        while True:
            config = self.config()
            if config is None:  # orch's files were removed: nothing to watch any more
                return 0
            decision = self.check(config)
            if decision.action != "stop":
                self.reported = False
            elif self.act(decision, config):
                return 0
            if once:
                return 0
            step = interval or float(config["policy"].get("interval_s") or 60)
            signal.sigtimedwait({signal.SIGUSR1}, step)


def _boot_time() -> float | None:
    """When the machine booted (the TTL of a machine without a known start counts from it)."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def _process_matches(pid: int, needle: str) -> bool:
    """pid is alive (not a zombie) and its command line contains `needle` (no pid reuse)."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and needle in cmdline


def _atomic_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    os.replace(tmp, path)


def start(home: Path, argv: list[str]) -> int:
    """Start the agent in the background unless one runs; prints 'running PID' or
    'started PID'. The lock is taken before forking, so two starts never race."""
    folder = home / ".orch" / "idle"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(folder / "agent.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = (folder / "agent.pid").read_text().strip() if (folder / "agent.pid").exists() else "?"
        print(f"running {pid}")
        return 0
    read, write = os.pipe()
    if os.fork():  # the caller: wait for the daemon's pid, then leave it holding the lock
        os.close(write)
        os.close(fd)
        with os.fdopen(read) as pipe:
            print(f"started {pipe.read().strip()}")
        return 0
    os.close(read)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    (folder / "agent.pid").write_text(f"{os.getpid()}\n")
    os.write(write, f"{os.getpid()}\n".encode())
    os.close(write)
    args = parse(argv)
    code = 1
    try:
        code = Agent(home, args.clock_file).run(args.interval)
    finally:
        os._exit(code)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="orch-idle-agent")
    parser.add_argument("command", choices=["start", "run", "once"], nargs="?", default="run")
    parser.add_argument("--interval", type=float, default=None, help="seconds between checks")
    parser.add_argument("--clock-file", type=Path, default=None, help="read 'now' from here")
    parser.add_argument("--home", type=Path, default=None, help="default: $HOME")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    home = (args.home or Path(os.environ.get("HOME") or os.path.expanduser("~"))).absolute()
    if args.command == "start":
        return start(home, [a for a in argv if a != "start"])
    agent = Agent(home, args.clock_file)
    return agent.run(args.interval, once=args.command == "once")


if __name__ == "__main__":
    sys.exit(main())
