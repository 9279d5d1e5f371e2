"""The idle agent's signals: what on the machine counts as someone using it (stdlib only;
shipped to the machine as `orch_idle_probe.py` next to the agent).

Counted: orch jobs running (their state files under ~/logs/NAME/), terminal input on a PTY
used by a session of this user (the tty's atime, which Linux moves on input, in 8-second
steps), input on a client attached to orch's tmux socket (`orch attach`), traffic of the
VS Code server's processes, a sync batch (the sync generation file's mtime) or `orch idle
keep` / a debug session (marker files), and CPU and GPU use over thresholds. Connections
are never counted, so orch's pooled connection, ControlMaster and port forwarder cannot keep
a machine up. "Sessions of this user" are the processes whose HOME is the agent's HOME (on
the local machine that is the machine's own home, not the laptop's). A check that fails
counts as active, so a broken probe never stops a machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

try:
    from orch_idle_decide import Signals
except ImportError:
    from remote_config.idle import Signals

VSCODE_MARKS = (".vscode-server", ".vscode-remote", "code-server", ".cursor-server")
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def gather(home: Path, config: dict[str, Any], memory: dict[str, Any], now: float) -> Signals:
    active: list[str] = []
    events: list[tuple[float, str]] = []
    jobs = 0
    procs: dict[int, dict[str, Any]] = {}
    try:
        procs = scan_processes(home)
    except Exception as exc:  # a failed check counts as active
        active.append(f"check failed: processes: {exc}")
    probes = {
        "jobs": lambda: running_jobs(home),
        "terminals": lambda: terminal_input(procs),
        "tmux": lambda: tmux_activity(str(config.get("tmux_socket") or "")),
        "markers": lambda: marker_events(home, config.get("markers") or []),
        "cpu": lambda: cpu_busy(config, memory, procs),
        "gpu": lambda: gpu_busy(float(config.get("gpu_threshold_pct", 10))),
        "vscode": lambda: vscode_traffic(procs, memory, int(config.get("vscode_bytes", 65536))),
    }
    for name, probe in probes.items():
        if name in (config.get("disable") or []):
            continue
        try:
            found = probe()
        except Exception as exc:  # a failed check counts as active
            active.append(f"check failed: {name}: {exc}")
            continue
        if name == "jobs":
            jobs = int(found)  # type: ignore[arg-type]
        elif isinstance(found, tuple):
            events.append(found)
        elif isinstance(found, str):
            active.append(found)
    latest = max(events, default=None)
    return Signals(
        jobs=jobs,
        active=tuple(active),
        last_event=latest[0] if latest else None,
        last_event_what=latest[1] if latest else "",
    )


def scan_processes(home: Path) -> dict[int, dict[str, Any]]:
    """pid -> {tty, ticks, cmd} for this user's processes whose HOME is `home` (not ours)."""
    me = os.getpid()
    want = b"HOME=" + str(home).encode()
    found: dict[int, dict[str, Any]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = Path(entry.path, "environ").read_bytes().split(b"\0")
            if want not in environ:
                continue
            stat = Path(entry.path, "stat").read_text()
            cmd = (
                Path(entry.path, "cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode(errors="replace")
            )
        except OSError:  # gone, or another user's
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if fields[0] == "Z":
            continue
        # fields[0] is field 3 (state): tty_nr is field 7, utime/stime fields 14/15.
        found[int(entry.name)] = {
            "tty": int(fields[4]),
            "ticks": int(fields[11]) + int(fields[12]),
            "cmd": cmd,
        }
    return found


def running_jobs(home: Path) -> int:
    """orch jobs started this boot with no result and a live wrapper (see job_scripts.py)."""
    logs = home / "logs"
    if not logs.is_dir():
        return 0
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "none"
    count = 0
    for meta in logs.glob("*/meta"):
        job = meta.parent
        if (job / "result").exists():
            continue
        fields = dict(line.split("=", 1) for line in meta.read_text().split() if "=" in line)
        if fields.get("boot", boot) != boot:
            continue
        pid_file = job / "pid"
        if not pid_file.exists():
            count += 1  # starting: the wrapper has not written its pid yet
            continue
        words = pid_file.read_text().split()
        if words and _alive(int(words[0])):
            count += 1
    return count


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def terminal_input(procs: dict[int, dict[str, Any]]) -> tuple[float, str] | None:
    """The latest input on a PTY that one of the session processes has as its terminal."""
    ttys = {p["tty"] for p in procs.values() if p["tty"]}
    latest: tuple[float, str] | None = None
    for pts in Path("/dev/pts").glob("[0-9]*"):
        try:
            st = pts.stat()
        except OSError:
            continue
        if st.st_rdev in ttys and (latest is None or st.st_atime > latest[0]):
            latest = (st.st_atime, f"terminal input on {pts}")
    return latest


def tmux_activity(socket: str) -> tuple[float, str] | None:
    """The latest input time of a client attached to orch's tmux server (`orch attach`)."""
    if not socket or not os.path.exists(socket) or shutil.which("tmux") is None:
        return None
    done = subprocess.run(
        ["tmux", "-S", socket, "list-clients", "-F", "#{client_activity}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if done.returncode != 0:
        if "no server running" in done.stderr or "error connecting" in done.stderr:
            return None  # a stale socket: no tmux server, so no client
        raise RuntimeError(done.stderr.strip()[-200:] or f"tmux exited {done.returncode}")
    times = [float(t) for t in done.stdout.split() if t.strip().isdigit()]
    return (max(times), "orch attach (tmux client input)") if times else None


def marker_events(home: Path, markers: list[list[str]]) -> tuple[float, str] | None:
    """The newest of the marker files: [[path, what], ...] ('~/' is the home)."""
    latest: tuple[float, str] | None = None
    for path, what in markers:
        full = home / path[2:] if path.startswith("~/") else Path(path)
        try:
            mtime = full.stat().st_mtime
        except OSError:
            continue
        if latest is None or mtime > latest[0]:
            latest = (mtime, what)
    return latest


def cpu_busy(
    config: dict[str, Any], memory: dict[str, Any], procs: dict[int, dict[str, Any]]
) -> str | None:
    """'cpu N%' (of one core) when the use since the last check is over the threshold.

    scope 'system' reads /proc/stat (a machine of its own); 'home' sums the session
    processes (the local machine, which shares the laptop's CPU)."""
    threshold = float(config.get("cpu_threshold_pct", 50))
    mono = time.monotonic()
    if _cpu_scope(config) == "home":
        ticks = sum(p["ticks"] for p in procs.values())
    else:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
        values = [int(v) for v in first[1:]]
        ticks = sum(values) - values[3] - (values[4] if len(values) > 4 else 0)  # idle, iowait
    previous = memory.get("cpu")
    memory["cpu"] = (mono, ticks)
    if previous is None or mono <= previous[0]:
        return None
    pct = 100.0 * (ticks - previous[1]) / CLK_TCK / (mono - previous[0])
    return f"cpu {pct:.0f}%" if pct >= threshold else None


def _cpu_scope(config: dict[str, Any]) -> str:
    """'home' when the machine's home is not the user's real one: an embedded machine that
    shares a computer (the local machine), where only its own sessions' CPU counts."""
    scope = config.get("cpu_scope")
    if scope in ("home", "system"):
        return str(scope)
    import pwd

    real = pwd.getpwuid(os.getuid()).pw_dir
    home = os.environ.get("HOME", real)
    return "system" if os.path.realpath(home) == os.path.realpath(real) else "home"


def gpu_busy(threshold: float) -> str | None:
    """'gpu N%' when any GPU's utilisation is over the threshold (nvidia-smi, when present)."""
    if shutil.which("nvidia-smi") is None:
        return None
    done = subprocess.run(
        ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    values = [float(v) for v in done.stdout.split() if v.strip()]
    top = max(values, default=0.0)
    return f"gpu {top:.0f}%" if top >= threshold else None


def vscode_traffic(
    procs: dict[int, dict[str, Any]], memory: dict[str, Any], threshold: int
) -> str | None:
    """'vscode traffic' when the VS Code server's processes moved more than `threshold`
    bytes since the last check (its own heartbeats stay far below it)."""
    total = 0
    for pid, proc in procs.items():
        if not any(mark in proc["cmd"] for mark in VSCODE_MARKS):
            continue
        try:
            io = dict(
                line.split(": ", 1) for line in Path(f"/proc/{pid}/io").read_text().splitlines()
            )
        except OSError:
            continue
        total += int(io.get("rchar", 0)) + int(io.get("wchar", 0))
    previous = memory.get("vscode")
    memory["vscode"] = total
    if previous is None or total - previous < threshold:
        return None
    return f"vscode traffic {(total - previous) // 1024} KiB"
