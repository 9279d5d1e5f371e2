"""Remote jobs, the pure part: job names, command text, the `JobInfo` model, status parsing.

A job's state lives on the remote in `~/logs/NAME/` (see `job_scripts.py` for the files and
the scripts that write them). One status round trip prints a snapshot: the remote clock, its
boot id, the current code version of the project folder, every job's small state files (or
"same" when they did not change since the last read, see `StatusCache`) and one line per
running job with its process tree's totals (`@tree`: pid ppid rss cpu starttime processes;
without /proc, `@ps` lists every process instead). This module turns that text into
`JobInfo` values: the state (running, succeeded, failed, stopped, lost, or interrupted: a
spot notice, see interruption.py), the memory and CPU of each job's whole process tree,
durations and whether a running job's code is stale. No I/O here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from remote_config.interruption import Interruption, job_detail, parse_record

JobState = Literal["running", "succeeded", "failed", "stopped", "lost", "interrupted"]

# The charset; a leading '-' or '.' is refused (options, hidden folders, '..').
JOB_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_COMMAND_BYTES = 1024 * 1024
COMMAND_SHOWN_BYTES = 4096  # status shows this much of a command, then "…"
STARTING_GRACE_S = 10  # a job with no pid file yet is "starting" for this long, then lost
DEFAULT_PAGE_SIZE = 4096


class JobInfo(BaseModel):
    """One job as `orch status` and the extension show it (docs/protocol.md)."""

    name: str
    state: JobState
    started: datetime | None = None
    ended: datetime | None = None
    exit_code: int | None = None
    rss_bytes: int | None = None
    cpu_percent: float | None = None
    duration_s: float | None = None
    command: str = ""
    code_version: str | None = None
    code_stale: bool = False
    # "snapshot": runs from a hard-linked copy of the synced tree (later syncs never change
    # its code); "live": runs in the project folder itself (saves reach it, e.g. a dev server
    # that reloads). None for jobs started by an earlier orch.
    mode: Literal["snapshot", "live"] | None = None
    pid: int | None = None
    detail: str | None = None
    backend: str = "tmux"  # which job backend runs it (sidecar/jobs/backend.py)
    cost_usd: float | None = None  # what it cost so far, where the backend bills per job


def validate_job_name(name: str) -> str:
    """Return `name` if it can name a job, else raise ValueError saying what is allowed."""
    if not isinstance(name, str) or not JOB_NAME_RE.match(name):
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:80]}…"
        raise ValueError(
            f"invalid job name {shown!r}: use 1-64 letters, digits, '.', '_' and '-', "
            "starting with a letter, digit or '_'"
        )
    return name


def tmux_session(name: str) -> str:
    """The tmux session of a job: tmux turns '.' in session names into '_', so map it to '+'
    (outside the job-name charset, so the mapping stays one-to-one)."""
    return validate_job_name(name).replace(".", "+")


def command_text(command: str | Sequence[str]) -> str:
    """The shell command line a job runs.

    A string is a command line the user wrote and is run by exactly one shell; a list is an
    argv and is quoted so that the shell runs it word for word.
    """
    if isinstance(command, str):
        text = command
    else:
        argv = list(command)
        if not argv:
            raise ValueError("the command is empty")
        text = shlex.join(argv)
    if not text.strip():
        raise ValueError("the command is empty")
    if "\x00" in text:
        raise ValueError("the command contains a NUL byte, which no shell can run")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("the command is not valid UTF-8 text") from None
    if size > MAX_COMMAND_BYTES:
        raise ValueError(
            f"the command is {size} bytes; the limit is {MAX_COMMAND_BYTES} "
            "(put long commands in a script in the project and run that)"
        )
    return text


def validate_env(env: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in env.items():
        if not ENV_NAME_RE.match(key):
            raise ValueError(f"environment variable name {key!r} is not valid")
        if "\x00" in value:
            raise ValueError(f"environment variable {key} contains a NUL byte")
        out[key] = value
    return out


def parse_env_assignments(items: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` strings (from `--env`) as a dict; raises ValueError on a malformed one."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    return validate_env(env)


# -- status snapshots --------------------------------------------------------------------------
@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    rss: int  # pages when read from /proc, KiB when read from ps
    cpu: float  # percent of one CPU, averaged over the process's life
    start: int | None  # clock ticks since boot (None from ps)


@dataclass
class Snapshot:
    now: int = 0
    boot: str = ""
    code: str | None = None
    # Platform notices (a spot interruption) by the boot they ended: see interruption.py.
    interruptions: dict[str, Interruption] = field(default_factory=dict)
    rss_in_kib: bool = False
    procs: dict[int, Proc] = field(default_factory=dict)  # one per process (@proc, @ps)
    trees: dict[int, Proc] = field(default_factory=dict)  # root -> its tree's totals (@tree)
    files: dict[str, dict[str, str]] = field(default_factory=dict)  # job -> file -> text
    children: dict[int, list[int]] | None = None  # ppid -> pids, built on first use


def parse_snapshot(text: str) -> Snapshot:
    """Parse the output of the status script (`job_scripts.status_script`)."""
    snap = Snapshot()
    section = ""
    for line in text.splitlines():
        if line.startswith("@"):
            tag, _, rest = line.partition(" ")
            if tag == "@now":
                snap.now = _int(rest) or 0
            elif tag == "@boot":
                snap.boot = rest.strip()
            elif tag == "@code":
                snap.code = rest.strip() or None
            elif tag == "@interruption":
                record = parse_record(rest)
                if record is not None:
                    snap.interruptions[record.boot] = record

            else:
                section = tag
                snap.rss_in_kib = snap.rss_in_kib or tag == "@ps"
            continue
        if section == "@files":
            _add_file_line(snap.files, line)
        elif section in ("@proc", "@ps", "@tree"):
            proc = _parse_proc(line, with_start=section != "@ps")
            if proc is not None:
                (snap.trees if section == "@tree" else snap.procs)[proc.pid] = proc
    return snap


class StatusCache:
    """What a job's status read cannot change while the job's key stays the same: all its
    files. The key (the pid and result files' text, see ORCH_STATUS_AWK) changes whenever the
    job starts, restarts or ends, and the stop file is written before the result, so a job
    whose key is unchanged is sent as one "same" line (a running one also gets its `@tree`
    line: memory and CPU are read every time)."""

    KEPT = ("pid", "result", "stop", "meta", "cmd.sh", "cmd.sh.cut")

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, dict[str, str]]] = {}  # job -> (key, files)

    def keys(self) -> dict[str, str]:
        return {job: key for job, (key, _files) in self.entries.items()}

    def apply(self, snap: Snapshot) -> None:
        """Fill `snap` from the cache where the remote said "same"; remember the rest."""
        entries: dict[str, tuple[str, dict[str, str]]] = {}
        for job, files in snap.files.items():
            key = files.pop("key", "").strip()
            if files.pop("same", None) is not None:
                cached = self.entries.get(job)
                if cached is None:  # never sent without a key: nothing to fill from
                    continue
                files.update(cached[1])
                entries[job] = cached
            elif key and "meta" in files:
                entries[job] = (key, {k: files[k] for k in self.KEPT if k in files})
        self.entries = entries


def _add_file_line(files: dict[str, dict[str, str]], line: str) -> None:
    path, sep, content = line.partition(":")
    job, slash, name = path.partition("/")
    if not sep or not slash or not JOB_NAME_RE.match(job):
        return
    per_job = files.setdefault(job, {})
    per_job[name] = per_job.get(name, "") + content + "\n"


def _parse_proc(line: str, *, with_start: bool) -> Proc | None:
    parts = line.split()
    if len(parts) < 4:
        return None
    try:
        pid, ppid, rss = int(parts[0]), int(parts[1]), int(parts[2])
        cpu = float(parts[3])
    except ValueError:
        return None
    start = _int(parts[4]) if with_start and len(parts) > 4 else None
    return Proc(pid, ppid, rss, cpu, start)


def _int(value: str | None) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _kv(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _time(epoch: int | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


def children_of(procs: Mapping[int, Proc]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    return children


def tree_usage(
    procs: Mapping[int, Proc], root: int, children: dict[int, list[int]] | None = None
) -> tuple[int, float]:
    """(rss, cpu) summed over `root` and all its descendants (`children`: children_of(procs),
    computed once per snapshot by the caller when it sums several trees)."""
    if children is None:
        children = children_of(procs)
    rss, cpu, stack, seen = 0, 0.0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen or pid not in procs:
            continue
        seen.add(pid)
        rss += procs[pid].rss
        cpu += procs[pid].cpu
        stack.extend(children.get(pid, ()))
    return rss, cpu


def jobs_from_snapshot(snap: Snapshot) -> list[JobInfo]:
    """Every job in the snapshot (folders without `meta` are removed jobs: skipped)."""
    jobs = [_job(name, files, snap) for name, files in snap.files.items() if "meta" in files]
    return sorted(jobs, key=lambda j: (j.started or datetime.min.replace(tzinfo=UTC), j.name))


def _job(name: str, files: dict[str, str], snap: Snapshot) -> JobInfo:
    meta = _kv(files.get("meta"))
    started = _int(meta.get("started"))
    info = JobInfo(
        name=name,
        state="lost",
        started=_time(started),
        command=(files.get("cmd.sh") or "").removesuffix("\n")
        + ("…" if "cmd.sh.cut" in files else ""),
        code_version=meta.get("code") or None,
        mode=meta.get("mode") if meta.get("mode") in ("snapshot", "live") else None,
    )
    if "result" in files:
        _finished(info, files, started)
    else:
        _unfinished(info, files, meta, snap, started)
    return info


def _finished(info: JobInfo, files: dict[str, str], started: int | None) -> None:
    result = _kv(files.get("result"))
    ended = _int(result.get("ended"))
    info.exit_code = _int(result.get("exit_code"))
    info.ended = _time(ended)
    if started is not None and ended is not None:
        info.duration_s = float(max(0, ended - started))
    if "stop" in files:
        info.state = "stopped"
    elif info.exit_code == 0:
        info.state = "succeeded"
    else:
        info.state = "failed"
        if info.exit_code is None:
            info.detail = "the exit status could not be read"
        elif info.exit_code > 128:
            info.detail = f"killed by signal {info.exit_code - 128}"


def _unfinished(
    info: JobInfo, files: dict[str, str], meta: dict[str, str], snap: Snapshot, started: int | None
) -> None:
    if started is not None and snap.now:
        info.duration_s = float(max(0, snap.now - started))
    notice = snap.interruptions.get(meta.get("boot", ""))
    if meta.get("boot") and snap.boot and meta["boot"] != snap.boot:
        info.detail = "the machine rebooted after the job started; no exit status was recorded"
        if notice is not None:  # its boot ended with a spot interruption: not lost
            info.state, info.detail = "interrupted", job_detail(notice, running=False)
        return
    pid_fields = (files.get("pid") or "").split()
    pid = _int(pid_fields[0]) if pid_fields else None
    if pid is None:
        if started is not None and snap.now - started <= STARTING_GRACE_S:
            info.state, info.detail = "running", "starting"
        else:
            info.detail = "the job never started (its tmux session vanished)"
        return
    tree = snap.trees.get(pid)
    proc = tree or snap.procs.get(pid)
    recorded_start = _int(pid_fields[1]) if len(pid_fields) > 1 else None
    same = proc is not None and (
        proc.start is None or not recorded_start or proc.start == recorded_start
    )
    if not same:
        info.detail = "its processes are gone but no exit status was recorded (tmux was killed?)"
        if notice is not None:  # killed as the interrupted machine shut down
            info.state, info.detail = "interrupted", job_detail(notice, running=False)
        return
    info.state, info.pid = "running", pid
    tmux_pid = _int(pid_fields[3]) if len(pid_fields) > 3 else None
    if tmux_pid and proc is not None and proc.ppid != tmux_pid:  # re-parented: tmux died
        info.detail = "orch's tmux server is gone: the job keeps running, but attach cannot work"
    if notice is not None:  # still running, but the machine goes away within two minutes
        info.state, info.detail = "interrupted", job_detail(notice, running=True)
    if tree is not None:  # summed on the machine
        rss, cpu = tree.rss, tree.cpu
    else:
        if snap.children is None:  # once per snapshot, not once per job
            snap.children = children_of(snap.procs)
        rss, cpu = tree_usage(snap.procs, pid, snap.children)
    page = 1024 if snap.rss_in_kib else (_int(meta.get("pagesize")) or DEFAULT_PAGE_SIZE)
    info.rss_bytes = rss * page
    info.cpu_percent = round(cpu, 1)
    info.code_stale = bool(info.code_version and snap.code and info.code_version != snap.code)
