"""The sync under faults, against a real OpenSSH sshd: ≥ 2,000 random operations (create,
modify, delete, rename files and folders; binary, empty and 20 MB files; editor-style saves)
while the server and the sync process are killed by PID several times. At the end the trees
are identical: no lost, stale or orphaned path and no false conflict copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Sshd, _alive, stop_pid
from tests.integration.test_sync import (
    Project,
    _close_masters,
    _descendants,
    dirs_of,
    sync_project,
    tree,
    wait_until,
)
from tests.integration.test_sync_faults import MB, conflict_copies, editor_save

pytestmark = pytest.mark.integration

OPERATIONS = 2000
KILLS_EVERY = 250  # alternately the sync process and the server


@pytest.fixture
def proj(sshd: Sshd, project: Path, orch_home: Path) -> Iterator[Project]:
    yield from sync_project(sshd, project, orch_home)


@pytest.fixture
def local_proj(project: Path, orch_home: Path) -> Iterator[Project]:
    """A project syncing to the embedded local machine (no shared test user: any number of
    these runs side by side)."""
    name = f"t{os.getpid()}-{time.monotonic_ns() % 10**9}"
    (project / "orch.toml").write_text(
        '[project]\ndefault_machine = "local"\n'
        f'[sync]\nremote_dir = "~/work/{name}"\nexclude = ["*.log"]\n'
        '[machines.local]\nkind = "local"\nidle_stop = "off"\n'
    )
    home = orch_home / "machines" / "local" / "home"
    p = Project(project, home / "work" / name, None)  # type: ignore[arg-type]
    up = p.orch("up", timeout=120)
    assert up.returncode == 0, up.stderr
    try:
        yield p
    finally:
        status = p.status()
        p.orch("sync", "stop")
        if status.get("owner_pid"):
            stop_pid(int(status["owner_pid"]))
        _close_masters(orch_home)
        p.orch("down", timeout=60)


class Server:
    """The machine's server, killed by its PID with every session it had, and started again."""

    def __init__(self, proj: Project, orch_home: Path) -> None:
        self.proj = proj
        self.state = orch_home / "machines" / "local" / "state.json"

    def kill(self) -> None:
        if self.proj.sshd is not None:
            sessions = _descendants(self.proj.sshd.proc.pid)  # type: ignore[union-attr]
            self.proj.sshd.stop()
            for pid in sessions:
                stop_pid(pid)
            return
        pid = int(json.loads(self.state.read_text())["pid"])
        sessions = _descendants(pid)
        os.kill(pid, signal.SIGKILL)
        for child in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        wait_until(lambda: not _alive(pid), 10, "the killed server to be gone")

    def start(self) -> None:
        if self.proj.sshd is not None:
            self.proj.sshd.start()
            return
        out = self.proj.orch("up", timeout=120)
        assert out.returncode == 0, out.stderr


class Chaos:
    """Random edits of a tree, keeping a list of its files and folders."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.files: list[Path] = []
        self.dirs: list[Path] = [root]
        self.big_writes = 0

    def content(self) -> bytes:
        kind = self.rng.random()
        if kind < 0.1:
            return b""
        if kind < 0.4:
            return self.rng.randbytes(self.rng.randint(1, 20_000))  # binary
        return "".join(self.rng.choice("abc \n") for _ in range(self.rng.randint(1, 800))).encode()

    def folder(self) -> Path:
        return self.rng.choice(self.dirs)

    def step(self, i: int) -> None:
        r = self.rng.random()
        if r < 0.25 or not self.files:
            path = self.folder() / f"n{i}.{self.rng.choice(['py', 'bin', 'txt'])}"
            path.write_bytes(self.content())
            self.files.append(path)
        elif r < 0.45:
            self.rng.choice(self.files).write_bytes(self.content())
        elif r < 0.55:
            editor_save(self.rng.choice(self.files), self.content())
        elif r < 0.65:
            self.files.pop(self.rng.randrange(len(self.files))).unlink()
        elif r < 0.75:
            src = self.files.pop(self.rng.randrange(len(self.files)))
            dst = self.folder() / f"mv{i}{src.suffix}"
            src.rename(dst)
            self.files.append(dst)
        elif r < 0.83:
            new = self.folder() / f"d{i}"
            new.mkdir()
            self.dirs.append(new)
        elif r < 0.90 and len(self.dirs) > 1:
            self.rename_folder(i)
        elif r < 0.95 and len(self.dirs) > 1:
            self.delete_folder()
        elif self.big_writes < 4 and i > OPERATIONS // 4:
            self.big_writes += 1
            big = self.root / "big.bin"
            editor_save(big, self.rng.randbytes(20 * MB), chunk=4 * MB)
            if big not in self.files:
                self.files.append(big)
        else:
            self.rng.choice(self.files).write_bytes(self.content())

    def rename_folder(self, i: int) -> None:
        src = self.rng.choice(self.dirs[1:])
        dst = src.parent / f"r{i}"
        src.rename(dst)
        self.remap(src, dst)

    def delete_folder(self) -> None:
        victim = self.rng.choice(self.dirs[1:])
        subprocess.run(["rm", "-rf", str(victim)], check=True)
        self.remap(victim, None)

    def remap(self, old: Path, new: Path | None) -> None:
        def moved(p: Path) -> Path | None:
            if p == old or old in p.parents:
                return None if new is None else new / p.relative_to(old)
            return p

        self.files = [m for p in self.files if (m := moved(p)) is not None]
        self.dirs = [m for p in self.dirs if (m := moved(p)) is not None]


def _sync_pid(proj: Project) -> int | None:
    pid = proj.status().get("owner_pid")
    return int(pid) if pid else None


def _cases() -> list[tuple[str, int]]:
    """(machine, seed) to run: CI's, or with ORCH_CHAOS_SEEDS="1,2,3" each seed on both
    machines (many runs by hand; `-k local` needs no shared test user)."""
    raw = os.environ.get("ORCH_CHAOS_SEEDS", "")
    seeds = [int(s) for s in raw.split(",") if s.strip()]
    if seeds:
        return [(machine, seed) for seed in seeds for machine in ("sshd", "local")]
    return [("sshd", 12), ("sshd", 31), ("local", 47)]


@pytest.mark.parametrize(("machine", "seed"), _cases())
def test_two_thousand_operations_with_kills_end_identical(
    machine: str,
    seed: int,
    request: pytest.FixtureRequest,
    orch_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The sync runs in a process of its own here, killed and started again by hand; the orch
    # agent's kill -9 recovery (the next command resumes it) is tested in test_agent.py.
    monkeypatch.setenv("ORCH_NO_AGENT", "1")
    proj: Project = request.getfixturevalue("proj" if machine == "sshd" else "local_proj")
    server = Server(proj, orch_home)
    (proj.root / ".gitignore").write_text("*.tmp.swp\n")
    chaos = Chaos(proj.root, seed=seed)
    for i in range(40):
        chaos.step(i)
    assert proj.orch("sync", "start").returncode == 0
    kills = {"sync": 0, "server": 0}
    server_down = False
    for i in range(40, OPERATIONS + 40):
        chaos.step(i)
        if i % KILLS_EVERY:
            continue
        if (i // KILLS_EVERY) % 2:  # the sync process, by its PID, mid-stream
            pid = _sync_pid(proj)
            if pid:
                os.kill(pid, signal.SIGKILL)
                kills["sync"] += 1
                wait_until(lambda: _sync_pid(proj) is None, 10, "the killed sync to be gone")
                assert proj.status()["state"] == "failed"
            if server_down:
                server.start()
                server_down = False
            out = proj.orch("sync", "start", timeout=300)
            assert out.returncode == 0, out.stderr
        elif server_down:
            server.start()
            server_down = False
        else:  # the machine's server, by its PID, and every session it had
            server.kill()
            kills["server"] += 1
            server_down = True
    if server_down:
        server.start()
    assert kills["sync"] >= 3 and kills["server"] >= 3, kills
    out = proj.orch("sync", "now", timeout=300)
    assert out.returncode == 0, out.stderr
    proj.wait_synced(120)
    rules = proj.rules()
    local_dirs = {d for d in dirs_of(proj.root) if not rules.ignored_path(d, is_dir=True)}
    remote_dirs = dirs_of(proj.remote)
    assert remote_dirs == local_dirs, _dirs_report(proj, remote_dirs, local_dirs)  # no orphan
    assert tree(proj.root, rules) == tree(proj.remote)
    status = proj.status()
    assert status["conflicts"] == [] and conflict_copies(proj.remote) == [], status
    assert status["state"] == "idle", status


def _dirs_report(proj: Project, remote: set[str], local: set[str]) -> str:
    """What the sync state says about folders on one side only (to find why, when it fails)."""
    import sqlite3

    odd = sorted(remote ^ local)
    lines = [f"only there: {sorted(remote - local)}; only here: {sorted(local - remote)}"]
    home = Path(os.environ["ORCH_HOME"])
    for db in home.glob("sync/**/manifest.db"):
        with sqlite3.connect(db) as con:
            known = {r[0] for r in con.execute("SELECT path FROM dirs")}
            pending = dict(con.execute("SELECT path, hash FROM pending").fetchall())
        lines += [f"{d}: known={d in known} pending={pending.get(d, '-')}" for d in odd]
        log = db.parent / "sync.log"
        if log.exists():
            lines.append("sync.log tail:\n" + "\n".join(log.read_text().splitlines()[-40:]))
    return "\n".join(lines)
