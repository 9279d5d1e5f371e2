"""File sync against a real OpenSSH sshd on 127.0.0.1, through the real `orch` CLI.

Every check compares whole trees by content hash: the local project (ignored paths left out)
and the remote folder in the test user's home.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from remote_config.sync import IgnoreRules
from sidecar.app import Orchestrator
from tests.helpers import Sshd, run_orch, stop_pid

pytestmark = pytest.mark.integration


def tree(root: Path, rules: IgnoreRules | None = None) -> dict[str, str]:
    """path -> sha256 of every file (symlink: its target) under root, rules applied."""
    out = {}
    for folder, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(folder, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for d in dirs:
            rel = f"{rel_dir}/{d}" if rel_dir else d
            if d == ".orch" and not rel_dir:
                continue
            if rules is None or not rules.ignored(rel, is_dir=True):
                keep.append(d)
        dirs[:] = keep
        for name in files:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if rules is not None and rules.ignored(rel):
                continue
            full = Path(folder, name)
            try:
                data = os.readlink(full).encode() if full.is_symlink() else full.read_bytes()
            except FileNotFoundError:  # a temp file renamed away while we looked
                continue
            out[rel] = hashlib.sha256(data).hexdigest()
    return out


def dirs_of(root: Path) -> set[str]:
    return {
        os.path.relpath(f, root)
        for f, _, _ in os.walk(root)
        if f != str(root) and "/.orch" not in f + "/"
    }


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


class Project:
    def __init__(self, root: Path, remote: Path, sshd: Sshd) -> None:
        self.root = root
        self.remote = remote
        self.sshd = sshd

    def orch(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_orch("-C", str(self.root), *args, timeout=timeout)

    def status(self) -> dict:
        out = self.orch("sync", "status", "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def rules(self) -> IgnoreRules:
        return IgnoreRules.build(
            exclude=["*.log"],
            ignore_files={"": (self.root / ".gitignore").read_text()}
            | ({"sub": t} if (t := _read(self.root / "sub/.orchignore")) else {}),
        )

    def in_sync(self) -> bool:
        return tree(self.root, self.rules()) == tree(self.remote)

    def wait_synced(self, timeout: float = 30) -> None:
        wait_until(self.in_sync, timeout, "the remote tree to match the local one")


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.fixture
def proj(sshd: Sshd, project: Path, orch_home: Path) -> Iterator[Project]:
    yield from sync_project(sshd, project, orch_home)


def sync_project(sshd: Sshd, project: Path, orch_home: Path) -> Iterator[Project]:
    """A project syncing to its own folder in the test user's home; its sync stopped after."""
    name = f"t{os.getpid()}-{time.monotonic_ns() % 10**9}"
    (project / "orch.toml").write_text(
        '[project]\ndefault_machine = "box"\n'
        f'[sync]\nremote_dir = "~/work/{name}"\nexclude = ["*.log"]\n' + sshd.machine_toml()
    )
    p = Project(project, sshd.home / "work" / name, sshd)
    try:
        yield p
    finally:
        status = p.status() if sshd.proc else {}
        p.orch("sync", "stop")
        if status.get("owner_pid"):
            stop_pid(int(status["owner_pid"]))
        _close_masters(orch_home)


def _close_masters(orch_home: Path) -> None:
    """End the ControlMaster processes our rsync calls started (ssh -O exit, by alias)."""
    config = orch_home / "ssh" / "config"
    if not config.exists():
        return
    for line in config.read_text().splitlines():
        if line.startswith("Host "):
            with contextlib.suppress(Exception):
                subprocess.run(
                    ["ssh", "-F", str(config), "-O", "exit", line.split()[1]],
                    capture_output=True,
                    timeout=10,
                )


def populate(root: Path, n: int = 200) -> None:
    rng = random.Random(5)
    for i in range(n):
        folder = root / f"pkg{i % 7}" / f"m{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.py").write_bytes(rng.randbytes(rng.randint(0, 5000)))
    (root / ".gitignore").write_text("*.tmp\nbuild/\n")
    (root / "sub").mkdir()
    (root / "sub/.orchignore").write_text("secret.txt\n")
    (root / "sub/secret.txt").write_text("never leaves")
    (root / "sub/kept.txt").write_text("goes")
    for ignored in ("node_modules/x", ".venv/lib", "data", ".git", "build", "pkg1/__pycache__"):
        (root / ignored).mkdir(parents=True, exist_ok=True)
        (root / ignored / "blob").write_text("ignored")
    (root / "run.log").write_text("ignored by orch.toml")
    (root / "a.tmp").write_text("ignored by .gitignore")
    (root / "tool.sh").write_text("#!/bin/sh\n")
    (root / "tool.sh").chmod(0o755)
    (root / "link").symlink_to("tool.sh")
    (root / "empty-dir").mkdir()


ODD_NAMES = ("a b.py", "trail ", "nl\nname.py", "ünï/çodé.py", "w[1]*?.txt", "back\\#012", "#x")


def test_initial_sync_is_identical_and_ignore_rules_hold(proj: Project) -> None:
    populate(proj.root)
    for name in ODD_NAMES:  # the first copy's rules and rsync's report, read back exactly
        (proj.root / name).parent.mkdir(exist_ok=True)
        (proj.root / name).write_text(name)
    (proj.root / "ünï/x.tmp").write_text("ignored by .gitignore")
    out = proj.orch("sync", "now")
    assert out.returncode == 0, out.stderr
    local = tree(proj.root, proj.rules())
    remote = tree(proj.remote)
    assert local == remote and len(remote) > 200
    for ignored in ("node_modules", ".venv", "data", ".git", "build", "run.log", "a.tmp"):
        assert not (proj.remote / ignored).exists(), ignored
    assert not (proj.remote / "sub/secret.txt").exists()
    assert (proj.remote / "sub/kept.txt").read_text() == "goes"
    assert not (proj.remote / "pkg1/__pycache__").exists()
    assert (proj.remote / "empty-dir").is_dir()
    assert os.readlink(proj.remote / "link") == "tool.sh"
    assert (proj.remote / "tool.sh").stat().st_mode & 0o111
    assert all((proj.remote / n).read_text() == n for n in ODD_NAMES)
    assert not (proj.remote / "ünï/x.tmp").exists()
    assert proj.status()["generation"] == 1
    # Nothing changed: a second full sync transfers nothing and keeps the generation.
    assert proj.orch("sync", "now").returncode == 0
    assert proj.status()["generation"] == 1


def test_watcher_propagates_edits_deletes_renames_and_dirs(proj: Project) -> None:
    populate(proj.root, 60)
    out = proj.orch("sync", "start")
    assert out.returncode == 0, out.stderr
    status = proj.status()
    assert status["state"] == "idle" and status["watcher"] == "inotify" and status["owner_pid"]
    assert proj.in_sync()
    # A second owner is refused, naming the first.
    dup = proj.orch("sync", "start")
    assert dup.returncode == 6 and str(status["owner_pid"]) in dup.stderr
    r = proj.root
    (r / "pkg0/m0/f0.py").write_text("edited")
    (r / "pkg2/m2/f2.py").unlink()
    (r / "pkg3/m0/f3.py").rename(r / "pkg3/m0/renamed.py")
    (r / "pkg4").rename(r / "pkg4-moved")
    (r / "new/deep/er").mkdir(parents=True)
    (r / "new/deep/er/file.txt").write_text("new")
    (r / "new/empty").mkdir()
    (r / "tool.sh").chmod(0o700)
    (r / "node_modules/y.js").write_text("ignored")
    proj.wait_synced()
    # Folders follow in the same or the next batch as the files in them: wait for it.
    wait_until(lambda: not (proj.remote / "pkg4").exists(), what="the renamed folder to go")
    wait_until(lambda: (proj.remote / "new/empty").is_dir(), what="the new empty folder")
    assert (proj.remote / "tool.sh").stat().st_mode & 0o777 == 0o700
    assert not (proj.remote / "node_modules").exists()
    # Deleting a folder removes it remotely too.
    subprocess.run(["rm", "-rf", str(r / "new")], check=True)
    wait_until(lambda: not (proj.remote / "new").exists(), what="the folder removal")
    # A branch switch that keeps size and mtime still syncs (content decides).
    target = r / "pkg5/m2/f5.py"
    st = target.stat()
    target.write_bytes(bytes(b ^ 1 for b in target.read_bytes()))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    proj.wait_synced()
    assert proj.status()["generation"] > status["generation"]


def test_thousand_rapid_random_edits_converge(proj: Project) -> None:
    populate(proj.root, 100)
    assert proj.orch("sync", "start").returncode == 0
    rng = random.Random(11)
    files = [p for p in proj.root.rglob("*.py") if "__pycache__" not in str(p)]
    for i in range(1000):
        action = rng.random()
        if action < 0.6 or len(files) < 20:
            target = rng.choice(files) if files and action < 0.5 else proj.root / f"r/n{i}.py"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rng.randbytes(rng.randint(0, 3000)))
            if target not in files:
                files.append(target)
        elif action < 0.8:
            victim = files.pop(rng.randrange(len(files)))
            victim.unlink()
        else:
            src = files.pop(rng.randrange(len(files)))
            dst = src.with_name(f"mv{i}.py")
            src.rename(dst)
            files.append(dst)
    proj.wait_synced(60)
    assert proj.status()["state"] == "idle"


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def test_dropped_connection_pauses_and_resumes_with_every_edit(proj: Project) -> None:
    populate(proj.root, 60)
    assert proj.orch("sync", "start").returncode == 0
    assert proj.sshd.proc is not None
    sessions = _descendants(proj.sshd.proc.pid)
    proj.sshd.stop()
    for pid in sessions:  # the live connections die with the server
        stop_pid(pid)
    (proj.root / "pkg0/m0/f0.py").write_text("edited while down")
    (proj.root / "pkg1/m1/f1.py").unlink()
    (proj.root / "offline/new.txt").parent.mkdir()
    (proj.root / "offline/new.txt").write_text("made while down")
    wait_until(lambda: proj.status()["state"] == "paused", what="the sync to pause")
    (proj.root / "pkg2/m2/f2.py").write_text("also while down")
    proj.sshd.start()
    proj.wait_synced(40)
    status = proj.status()
    assert status["state"] == "idle", status


def test_conflict_keeps_both_versions(proj: Project) -> None:
    populate(proj.root, 20)
    assert proj.orch("sync", "start").returncode == 0
    rel = "pkg0/m0/f0.py"
    remote_file = proj.remote / rel
    cmd = f"printf 'remote edit' > {remote_file}"
    subprocess.run(proj.sshd.ssh_argv(cmd), check=True, capture_output=True, timeout=30)
    (proj.root / rel).write_text("local edit")
    wait_until(lambda: proj.status()["state"] == "conflict", what="the conflict")
    status = proj.status()
    [conflict] = status["conflicts"]
    assert conflict["path"] == rel
    assert remote_file.read_text() == "local edit"
    assert (proj.remote / conflict["remote_copy"]).read_text() == "remote edit"
    human = proj.orch("sync", "status").stdout
    assert "conflict" in human and conflict["remote_copy"] in human
    # The remote copy is never synced back nor deleted by later syncs.
    (proj.root / rel).write_text("local edit 2")
    wait_until(lambda: remote_file.read_text() == "local edit 2", what="the next edit")
    assert (proj.remote / conflict["remote_copy"]).exists()
    assert proj.orch("sync", "resolve").returncode == 0
    assert proj.status()["state"] == "idle" and proj.status()["conflicts"] == []


def test_inotify_exhaustion_falls_back_to_polling(proj: Project) -> None:
    populate(proj.root, 20)
    out = run_orch(
        "-C", str(proj.root), "sync", "start", env={"ORCH_SYNC_INOTIFY_LIMIT": "1"}, timeout=60
    )
    assert out.returncode == 0, out.stderr
    status = proj.status()
    assert status["watcher"] == "polling"
    assert "inotify watch limit reached" in status["detail"]
    assert "max_user_watches" in status["detail"]
    (proj.root / "pkg0/m0/f0.py").write_text("seen by polling")
    proj.wait_synced(10)


async def test_snapshot_is_unchanged_by_later_syncs(proj: Project) -> None:
    populate(proj.root, 50)
    assert proj.orch("sync", "start").returncode == 0
    proj.wait_synced()  # the watcher's first events may still be in flight after start
    orch = Orchestrator(cwd=proj.root)
    try:
        path, generation = await orch.prepare_snapshot()
        assert generation == proj.status()["generation"] >= 1
        snap = Path(path)
        assert snap.name == proj.status()["token"] and snap.is_dir()
        before = tree(snap)
        assert before == tree(proj.remote)
        (proj.root / "pkg0/m0/f0.py").write_text("changed after the snapshot")
        (proj.root / "pkg1/m1/f1.py").unlink()
        (proj.root / "added.py").write_text("new")
        proj.wait_synced()
        assert tree(snap) == before  # the job's code did not move
        again, later = await orch.prepare_snapshot()
        assert later > generation and again != path
        assert tree(Path(again)) == tree(proj.remote)
        same, gen2 = await orch.prepare_snapshot()  # nothing synced since: reused
        assert (same, gen2) == (again, later)
    finally:
        await orch.close()
