"""The first copy's manifest rows (`first_rows`) and how the helper checks them: recorded from
rsync's report and one local stat after the copy, with the remote inode unknown (so the
remote's content decides), a file edited during the copy sent again, and a file rsync sent but
removed here since still recorded, so the next batch removes it there."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

from remote_config.sync import Entry, IgnoreRules
from sidecar.sync.first_copy import RACE_MARGIN_NS, first_rows
from sidecar.sync.manifest import LocalStat, Manifest
from tests.unit.test_sync_pure import Helper, put

START = 10**18  # when rsync started (ns)
OLD = START - RACE_MARGIN_NS - 1  # a ctime from before the copy
NEW = START - RACE_MARGIN_NS + 1  # a ctime that may be an edit during the copy


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def recorded(
    tmp_path: Path, files: list[str], after: dict, sent: dict[str, str]
) -> tuple[dict[str, tuple[Entry, LocalStat | None]], set[str]]:
    """first_rows written to a real manifest and read back (the column order is checked)."""
    retry: set[str] = set()
    manifest = Manifest(tmp_path / "manifest.db")
    try:
        manifest.record_rows(first_rows(files, after, sent, START, retry))
        entries = manifest.entries()
        cache = manifest.cached_hashes()
        return {p: (e, cache[p][0] if p in cache else None) for p, e in entries.items()}, retry
    finally:
        manifest.close()


def test_a_file_unchanged_since_before_the_copy_keeps_its_stat_as_the_hash_cache(
    tmp_path: Path,
) -> None:
    after = {"a.py": (3, 111, OLD, 42, 0o644, None)}
    rows, retry = recorded(tmp_path, ["a.py"], after, {"a.py": md5(b"abc")})
    entry, cache = rows["a.py"]
    assert retry == set()
    assert entry == Entry(3, 111, 0o644, md5(b"abc"))  # no remote stat: ino/ctime unknown
    assert entry.ino is None and entry.ctime_ns is None
    assert cache == LocalStat(3, 111, OLD, 42)


def test_a_file_edited_during_the_copy_is_sent_again_without_a_hash_cache(
    tmp_path: Path,
) -> None:
    after = {"a.py": (5, 222, NEW, 42, 0o644, None)}
    rows, retry = recorded(tmp_path, ["a.py"], after, {"a.py": md5(b"abc")})
    # The hash is of what rsync sent (what the remote holds), never of the later content.
    assert rows["a.py"][0].hash == md5(b"abc") and rows["a.py"][1] is None
    assert retry == {"a.py"}


def test_a_file_sent_then_removed_here_is_recorded_so_the_next_batch_removes_it(
    tmp_path: Path,
) -> None:
    rows, retry = recorded(tmp_path, ["gone.py"], {}, {"gone.py": md5(b"x")})
    assert rows["gone.py"][0].hash == md5(b"x") and rows["gone.py"][1] is None
    assert retry == {"gone.py"}


def test_a_file_rsync_did_not_send_gets_no_entry(tmp_path: Path) -> None:
    after = {"late.py": (1, 1, OLD, 7, 0o644, None)}
    rows, retry = recorded(tmp_path, ["late.py", "never.py"], after, {})
    assert rows == {} and retry == {"late.py", "never.py"}


def test_a_symlink_keeps_its_target_hash_only_when_it_did_not_change(tmp_path: Path) -> None:
    after = {"l": (5, 1, OLD, 8, 0o777, "h-old"), "m": (5, 1, NEW, 9, 0o777, "h-new")}
    rows, retry = recorded(tmp_path, ["l", "m"], after, {})
    assert rows["l"][0].hash == "h-old" and rows["l"][1] is not None
    # Retargeted during the copy: what was sent is unknown (no hash: never a false conflict).
    assert rows["m"][0].hash is None and rows["m"][1] is None and retry == {"m"}


def test_helper_decides_first_copy_entries_by_content(tmp_path: Path) -> None:
    """An entry with the inode unknown: a same-size, same-mtime edit there is drift and a
    conflict; the unchanged file passes even when the recorded size is not the remote's (a
    file removed here after the copy is recorded with no size), and its stat comes back."""
    helper = Helper(tmp_path)
    try:
        target = tmp_path / "a.txt"
        target.write_bytes(b"orig")
        st = target.stat()
        entry = Entry(st.st_size, st.st_mtime_ns, 0o640, md5(b"orig"))
        [ok] = helper([{"op": "verify", "path": "a.txt", "expect": entry.expect()}])
        assert ok["ok"] and ok["stat"][2] == st.st_ino
        unknown_size = Entry(-1, -1, 0o644, md5(b"orig"))
        [ok] = helper([{"op": "verify", "path": "a.txt", "expect": unknown_size.expect()}])
        assert ok["ok"]
        target.write_bytes(b"EDIT")
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        [drift] = helper([{"op": "verify", "path": "a.txt", "expect": entry.expect()}])
        assert drift == {"drift": True}
        [r] = helper([put("a.txt", b"new!", entry.expect())], (b"new!",))
        assert r["conflict"] == "a.txt.orch-conflict-T"
        (tmp_path / "b.txt").write_bytes(b"bee")
        gone = Entry(-1, -1, 0o644, md5(b"bee"))
        [r] = helper([{"op": "delete", "path": "b.txt", "expect": gone.expect()}])
        assert r == {"ok": True} and not (tmp_path / "b.txt").exists()
    finally:
        helper.close()


async def test_recorder_records_each_file_rsync_reports_in_its_thread(tmp_path: Path) -> None:
    """Files reported sent are stat'ed and recorded while rsync goes on, in chunks; one
    removed here meanwhile is recorded for removal; a failure in the thread is raised."""
    import time

    from sidecar.sync.first_copy import Recorder

    tree = tmp_path / "tree"
    tree.mkdir()
    names = [f"f{i}.py" for i in range(5)]
    for name in names:
        (tree / name).write_bytes(name.encode())
    manifest = Manifest(tmp_path / "manifest.db")
    later = time.time_ns() + 2 * RACE_MARGIN_NS  # rsync "started" well after these writes
    recorder = Recorder(str(tree), manifest, later)
    recorder.CHUNK = 2
    recorder.sent([(name, md5(name.encode())) for name in names[:3]])
    recorder.sent([(name, md5(name.encode())) for name in [*names[3:], "gone.py"]])
    await recorder.finish()
    entries, cache = manifest.entries(), manifest.cached_hashes()
    assert sorted(entries) == sorted([*names, "gone.py"])
    assert entries["f3.py"].hash == md5(b"f3.py") and entries["f3.py"].ino is None
    assert cache["f3.py"][0].ino == (tree / "f3.py").stat().st_ino
    assert "gone.py" not in cache and recorder.retry == {"gone.py"}
    assert recorder.seen == {*names, "gone.py"}
    manifest.close()
    broken = Recorder(str(tree), manifest, later)  # a closed database: the thread fails
    broken.sent([("f0.py", md5(b"f0.py"))])
    try:
        await broken.finish()
    except Exception as exc:
        assert "closed" in str(exc).lower()
    else:
        raise AssertionError("the recorder's failure was not raised")


def test_rsync_report_lines_give_files_and_symlinks_exactly(tmp_path: Path) -> None:
    """Real rsync output: a file's md5, a symlink's target hashed as orch hashes symlinks
    (" -> " in a target: unreadable, left to the look afterwards; escaped bytes read back)."""
    import subprocess

    from remote_config.sync import parse_rsync_sent, rsync_argv

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "f").write_bytes(b"hi\n")
    (src / "dir").mkdir()
    (src / "link").symlink_to("f")
    (src / " lead").symlink_to("trail ")
    (src / "odd").symlink_to("a -> b")
    (src / "nl").symlink_to("x\ny")
    listing = tmp_path / "list"
    listing.write_bytes(b"\0".join([b"f", b"dir", b"link", b" lead", b"odd", b"nl"]) + b"\0")
    argv = rsync_argv("/dev/null", "unused", str(src), "~/x", str(listing))
    argv[-1] = f"{dst}/"  # a local copy: the same options and report
    argv = [a for a in argv if a not in ("-e", "ssh -F '/dev/null'", "ssh -F /dev/null")]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    found = dict(p for line in out.splitlines() if (p := parse_rsync_sent(line)))
    assert found == {
        "f": md5(b"hi\n"),
        "link": md5(b"link:f"),
        " lead": md5(b"link:trail "),
        "nl": md5(b"link:x\ny"),
    }


async def test_recorder_sorts_out_what_was_made_after_the_walk(tmp_path: Path) -> None:
    """A copy of the whole tree sends what the tree holds when rsync reads it: a file or
    folder made since the walk is recorded when the rules keep it, else left for removal."""
    from remote_config.sync import IgnoreRules
    from sidecar.sync.first_copy import Recorder

    tree = tmp_path / "tree"
    for rel in ("old.py", "new.py", "new.log", "fresh/x.py", "junk.log/y"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(rel.encode())
    rules = IgnoreRules.build(exclude=["*.log"])
    manifest = Manifest(tmp_path / "manifest.db")
    walked = ({"old.py"}, set())
    recorder = Recorder(str(tree), manifest, time.time_ns() + 2 * RACE_MARGIN_NS, walked, rules)
    recorder.dirs(["fresh", "junk.log"])
    sent = ["old.py", "new.py", "new.log", "fresh/x.py", "junk.log/y"]
    recorder.sent([(rel, md5(rel.encode())) for rel in sent])
    await recorder.finish()
    assert sorted(manifest.entries()) == ["fresh/x.py", "new.py", "old.py"]
    assert recorder.new_dirs == {"fresh"}
    assert recorder.unwanted_ops() == [
        {"op": "delete", "path": "junk.log/y", "expect": [-1, -1, md5(b"junk.log/y"), None, None]},
        {"op": "delete", "path": "new.log", "expect": [-1, -1, md5(b"new.log"), None, None]},
        {"op": "rmdir", "path": "junk.log"},
    ]
    manifest.close()


async def test_recorder_commits_a_file_made_after_the_walk_at_once(tmp_path: Path) -> None:
    """Such a file is in no write-ahead record: its row is written without waiting for a
    chunk to fill (a copy killed next still removes it there once it is deleted here)."""
    from sidecar.sync.first_copy import Recorder

    tree = tmp_path / "tree"
    tree.mkdir()
    for rel in ("old.py", "new.py"):
        (tree / rel).write_bytes(rel.encode())
    manifest = Manifest(tmp_path / "manifest.db")
    walked = ({"old.py"}, set())
    rules = IgnoreRules.build(exclude=["*.log"])
    recorder = Recorder(str(tree), manifest, time.time_ns(), walked, rules)
    recorder.sent([("old.py", md5(b"old.py"))])
    recorder.sent([("new.py", md5(b"new.py"))])
    deadline = time.monotonic() + 5
    while "new.py" not in manifest.entries() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert {"old.py", "new.py"} <= set(manifest.entries())  # before finish()
    await recorder.finish()
    manifest.close()
