"""Pure sync logic: ignore rules, planning, transport choice, rsync argv, the remote helper."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import struct
import subprocess
import sys
from pathlib import Path

from remote_config.sync import (
    HELPER_SOURCE,
    Entry,
    IgnoreRules,
    LocalFile,
    choose_transport,
    conflict_name,
    gone_parents,
    parse_rsync_progress,
    plan_changes,
    remote_rsync_path,
    rsync_argv,
    snapshot_command,
)


def test_default_excludes_and_orchs_own_files() -> None:
    rules = IgnoreRules.build()
    for path in (".git", "node_modules", "a/node_modules", "__pycache__", ".venv", "data"):
        assert rules.ignored(path, is_dir=True), path
    assert rules.ignored_path("src/__pycache__/m.pyc")
    assert rules.ignored_path("data/big.bin")
    assert not rules.ignored("data", is_dir=False)  # 'data/' matches folders only
    assert not rules.ignored_path("src/main.py")
    assert rules.ignored(".orch", is_dir=True)
    assert rules.ignored("a/b.txt.orch-conflict-20260101T000000Z")
    assert rules.ignored("a/.b.txt.orch-tmp")
    assert not IgnoreRules.build(default_excludes=False).ignored("node_modules", is_dir=True)


def test_config_and_nested_ignore_files_deepest_wins() -> None:
    rules = IgnoreRules.build(
        exclude=["*.log", "build/"],
        ignore_files={"": "*.tmp\n!keep.tmp\n", "sub": "*.csv\n!important.log\n"},
    )
    assert rules.ignored("x.log") and rules.ignored("deep/x.log")
    assert rules.ignored("a.tmp") and not rules.ignored("keep.tmp")
    assert rules.ignored("sub/t.csv") and not rules.ignored("t.csv")
    assert not rules.ignored("sub/important.log")  # re-included by the deeper file
    assert rules.ignored("sub/other.log")
    assert rules.ignored_path("build/out/x.o")


def lf(h: str, mode: int = 0o644, size: int = 1) -> LocalFile:
    return LocalFile(size, 1, mode, h)


def en(h: str | None, mode: int = 0o644) -> Entry:
    return Entry(1, 1, mode, h)


def test_plan_by_content_not_mtime() -> None:
    manifest = {"same": en("h1"), "changed": en("h2"), "gone": en("h3"), "chmod": en("h4")}
    local = {
        "same": LocalFile(1, 999, 0o644, "h1"),  # mtime differs, content equal: nothing
        "changed": lf("h2b"),
        "gone": None,
        "chmod": lf("h4", mode=0o755),
        "new": lf("h5"),
        "never": None,
    }
    plan = plan_changes(local, manifest)
    assert plan.puts == ["changed", "chmod", "new"]
    assert plan.deletes == ["gone"]
    assert plan.moves == []


def test_plan_pairs_renames_by_content() -> None:
    manifest = {"old/a": en("ha"), "old/b": en("hb"), "x": en(None)}
    local = {"old/a": None, "old/b": None, "new/a": lf("ha"), "new/b": lf("hb2"), "x": None}
    plan = plan_changes(local, manifest, gone_dirs=["old"], new_dirs=["new"])
    assert plan.moves == [("old/a", "new/a")]
    assert plan.puts == ["new/b"]
    assert plan.deletes == ["old/b", "x"]  # an uncertain hash is never paired
    assert plan.mkdirs == ["new"] and plan.rmdirs == ["old"]


def test_transport_crossover_and_parents() -> None:
    assert choose_transport([100] * 10) == "helper"
    assert choose_transport([100] * 300) == "helper"
    assert choose_transport([100] * 301) == "rsync"
    assert choose_transport([64 * 1024 * 1024]) == "rsync"
    assert gone_parents(["a/b/c.txt", "a/x"], {"a": True, "a/b": False}) == ["a/b"]


def test_rsync_argv_and_progress() -> None:
    argv = rsync_argv("/o/ssh config", "orch-p-box", "/l/proj", "~/work/p", "/tmp/list")
    assert argv[0] == "rsync" and "--from0" in argv and "--ignore-times" in argv
    assert argv[argv.index("-e") + 1] == "ssh -F '/o/ssh config'"
    assert argv[-2:] == ["/l/proj/", "orch-p-box:work/p/"]
    assert "--delete" not in argv  # deletions are orch's, checked against the manifest
    assert remote_rsync_path("~") == "." and remote_rsync_path("/srv/x") == "/srv/x"
    assert parse_rsync_progress("  1,234,567  45%  12.3MB/s  0:00:01") == 45
    assert parse_rsync_progress("sending incremental file list") is None
    assert conflict_name("a/b.txt", "20260101T000000Z", 2).endswith("-20260101T000000Z-2")


def test_snapshot_command_quotes_paths() -> None:
    cmd = snapshot_command("~/work/my proj", "~/.orch/snapshots/p", "abc-1")
    assert "r=\"$HOME\"/'work/my proj'" in cmd
    assert "flock 9" in cmd and "cp -al" in cmd and "mv -T" in cmd


def _snap(home: Path, expect: str | None) -> subprocess.CompletedProcess[str]:
    cmd = snapshot_command("~/work/p", "~/.orch/snapshots/p", expect)
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, env=env, timeout=30)


def test_snapshot_only_of_the_tree_this_sync_wrote_and_pruned(tmp_path: Path) -> None:
    """The token decides: never synced (3), another sync's or an unfinished batch's tree
    (4, the token found on stderr), else a copy named by the token; old ones are pruned
    except the newest few and those a running job uses."""
    root = tmp_path / "work/p"
    root.mkdir(parents=True)
    (root / "main.py").write_text("v1")
    assert _snap(tmp_path, "aa-1").returncode == 3
    (root / ".orch/generation").write_text("bb-1\n")  # another laptop / a lost state
    out = _snap(tmp_path, "aa-1")
    assert out.returncode == 4 and "bb-1" in out.stderr
    assert _snap(tmp_path, None).returncode == 4  # no record here: never trust what is there
    (root / ".orch/generation").write_text("aa-1~\n")  # a batch cut in half
    assert _snap(tmp_path, "aa-1").returncode == 4
    snaps = tmp_path / ".orch/snapshots/p"
    made = []
    for gen in range(1, 8):
        (root / ".orch/generation").write_text(f"aa-{gen}\n")
        (root / "main.py").write_text(f"v{gen}")
        out = _snap(tmp_path, f"aa-{gen}")
        assert out.returncode == 0, out.stderr
        token, path = out.stdout.split()
        assert token == f"aa-{gen}" and Path(path) == snaps / token
        assert (snaps / token / "main.py").read_text() == f"v{gen}"
        made.append(token)
        if gen == 1:  # a running job uses the first snapshot
            job = tmp_path / "logs/train"
            job.mkdir(parents=True)
            (job / "meta").write_text("started=1\n")
            (job / "run.sh").write_text(f"cd {path}\n")
        os.utime(snaps / token, (gen, gen))
    left = sorted(p.name for p in snaps.iterdir())
    assert left == sorted(["aa-1", "aa-4", "aa-5", "aa-6", "aa-7"]), left
    (tmp_path / "logs/train/result").write_text("exit_code=0\n")  # it finished
    (root / ".orch/generation").write_text("aa-8\n")
    assert _snap(tmp_path, "aa-8").returncode == 0
    assert "aa-1" not in {p.name for p in snaps.iterdir()}


class Helper:
    """The remote helper run as a real local python3 process (the transport is just pipes)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HELPER_SOURCE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._read() == {"hello": 1}

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        size = struct.unpack(">I", self.proc.stdout.read(4))[0]
        return json.loads(self.proc.stdout.read(size))

    def __call__(self, ops: list[dict], payloads: tuple[bytes, ...] = (), **extra: object) -> list:
        assert self.proc.stdin is not None
        data = json.dumps(
            {"root": str(self.root), "ops": ops, "suffix": ".orch-conflict-T", **extra}
        )
        self.proc.stdin.write(struct.pack(">I", len(data)) + data.encode() + b"".join(payloads))
        self.proc.stdin.flush()
        return self._read()["results"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=5)


def put(path: str, data: bytes, expect: list | None = None) -> dict:
    return {
        "op": "put",
        "path": path,
        "size": len(data),
        "mode": 0o640,
        "mtime_ns": 10**18,
        "hash": None,
        "expect": expect,
    }


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_helper_writes_atomically_and_keeps_both_on_conflict(tmp_path: Path) -> None:
    helper = Helper(tmp_path)
    try:
        [r] = helper([put("d/a.txt", b"v1")], (b"v1",), generation=3)
        assert r["ok"] and (tmp_path / "d/a.txt").read_bytes() == b"v1"
        assert (tmp_path / "d/a.txt").stat().st_mtime_ns == 10**18
        assert oct((tmp_path / "d/a.txt").stat().st_mode & 0o777) == "0o640"
        assert (tmp_path / ".orch/generation").read_text() == "3\n"
        assert not list((tmp_path / "d").glob(".*orch-tmp"))
        written = [2, 10**18, None]
        # The remote changes behind orch's back: the next put keeps it beside.
        (tmp_path / "d/a.txt").write_bytes(b"remote edit")
        [r] = helper([put("d/a.txt", b"v2", [*written[:2], "nomatch"])], (b"v2",))
        assert r["conflict"] == "d/a.txt.orch-conflict-T"
        assert (tmp_path / "d/a.txt").read_bytes() == b"v2"
        assert (tmp_path / "d/a.txt.orch-conflict-T").read_bytes() == b"remote edit"
        # A delete whose remote matches goes; a rename moves without data.
        stat = os.stat(tmp_path / "d/a.txt")
        [r] = helper(
            [
                {
                    "op": "move",
                    "src": "d/a.txt",
                    "path": "e/b.txt",
                    "expect": [stat.st_size, stat.st_mtime_ns, None],
                }
            ]
        )
        assert r["ok"] and (tmp_path / "e/b.txt").read_bytes() == b"v2"
        r, _ = helper(
            [
                {
                    "op": "delete",
                    "path": "e/b.txt",
                    # The inode unknown (an entry of a first copy): the content decides.
                    "expect": [stat.st_size, stat.st_mtime_ns, md5(b"v2")],
                },
                {"op": "rmdir", "path": "e"},
            ]
        )
        assert r["ok"] and not (tmp_path / "e").exists()
    finally:
        helper.close()


def test_helper_command_is_one_quoted_argument() -> None:
    from remote_config.sync import helper_command

    argv = shlex.split(helper_command())
    assert argv[:3] == ["python3", "-u", "-c"] and argv[3] == HELPER_SOURCE
    # with the sync's id, which the helper uses to end older helpers of the same sync
    assert shlex.split(helper_command(sync_id="ab12"))[3:] == [HELPER_SOURCE, "ab12"]


def test_helper_sees_edits_that_keep_size_and_mtime(tmp_path: Path) -> None:
    """Remote drift: an edit there that restores size and mtime changes ctime, which the
    helper compares (and then hashes); `verify` reports it, a put keeps it as a conflict."""
    helper = Helper(tmp_path)
    try:
        [r] = helper([put("a.txt", b"orig")], (b"orig",))
        import hashlib

        entry = Entry.written(r["stat"], 0o640, hashlib.md5(b"orig").hexdigest())
        [ok] = helper([{"op": "verify", "path": "a.txt", "expect": entry.expect()}])
        assert ok["ok"]
        target = tmp_path / "a.txt"
        st = target.stat()
        target.write_bytes(b"EDIT")  # same size
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
        [drift] = helper([{"op": "verify", "path": "a.txt", "expect": entry.expect()}])
        assert drift == {"drift": True}
        [r] = helper([put("a.txt", b"new!", entry.expect())], (b"new!",))
        assert r["conflict"] == "a.txt.orch-conflict-T"
        assert (tmp_path / "a.txt.orch-conflict-T").read_bytes() == b"EDIT"
        # A delete may also remove content a cut-short batch left ("alt"), and nothing else.
        (tmp_path / "b.txt").write_bytes(b"half")
        (tmp_path / "c.txt").write_bytes(b"users")
        alt = [hashlib.md5(b"half").hexdigest()]
        r1, r2 = helper(
            [
                {"op": "delete", "path": "b.txt", "expect": None, "alt": alt},
                {"op": "delete", "path": "c.txt", "expect": None, "alt": alt},
            ]
        )
        assert r1 == {"ok": True} and not (tmp_path / "b.txt").exists()
        assert r2["conflict"] == "c.txt.orch-conflict-T"
        # "begin" marks the tree as being changed until the batch's generation is written.
        helper([], begin="s-2")
        assert (tmp_path / ".orch/generation").read_text() == "s-2~\n"
        helper([], generation="s-2")
        assert (tmp_path / ".orch/generation").read_text() == "s-2\n"
    finally:
        helper.close()


def test_rsync_exit_23_for_vanished_sources_only(tmp_path: Path) -> None:
    """rsync --files-from exits 23 when a listed file is gone (an editor's temp file renamed
    away): that is a normal event; a real error (an unreadable file) is not."""
    from sidecar.sync.remote import only_vanished

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "kept.txt").write_text("x")
    listing = tmp_path / "list"
    listing.write_bytes(b"kept.txt\0gone.txt.tmp\0")
    argv = ["rsync", "-lptD", f"--files-from={listing}", "--from0", f"{src}/", f"{dst}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.returncode == 23 and only_vanished(out.stderr), out.stderr
    assert (dst / "kept.txt").exists()
    assert not only_vanished("rsync: mkstemp failed: Permission denied (13)\nrsync error: x")
    assert not only_vanished("")


def test_ignore_prefilter_gives_pathspecs_answers() -> None:
    """`IgnoreRules` skips specs whose union regex misses a path; for every path and rule
    (negations, anchors, folders only, `**`, nested files) it answers as asking each pattern
    would."""
    import itertools

    def build() -> IgnoreRules:
        return IgnoreRules.build(
            exclude=["*.log", "/build/", "!keep.log", "docs/**/tmp", "a?c", "[0-9]*.bin"],
            ignore_files={"": "out/\n*.pyc\n!important.pyc\n", "pkg": "/local\n*.tmp\n!x.tmp"},
        )

    fast, slow = build(), build()
    for spec in (slow.root, slow.always, *slow.nested.values()):
        slow._any[id(spec)] = None  # no union: each pattern asked in turn
    names = ["keep.log", "a.log", "build", "out", "m.pyc", "important.pyc", "abc", "x.tmp"]
    names += ["y.tmp", "local", "tmp", "1.bin", "b.bin", ".orch", "f.orch-conflict-1", "ok.py"]
    folders = ["", "pkg/", "docs/a/", "src/build/", "pkg/local/", "node_modules/"]
    verdicts = set()
    for folder, name, is_dir in itertools.product(folders, names, (False, True)):
        rel = folder + name
        assert fast.ignored(rel, is_dir) == slow.ignored(rel, is_dir), rel
        assert fast.ignored_path(rel, is_dir) == slow.ignored_path(rel, is_dir), rel
        verdicts.add(fast.ignored(rel, is_dir))
    assert verdicts == {True, False}
    assert fast.ignored("pkg/local", is_dir=True) and not fast.ignored("pkg/x.tmp")
    assert fast.ignored("a.log") and not fast.ignored("keep.log")
