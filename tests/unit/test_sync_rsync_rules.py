"""A first copy as a root transfer: the rsync filter rules made from orch's walk leave out
exactly what orch's ignore rules leave out (checked with real rsync on a tree of awkward
names, nested ignore files, negations, symlinks and empty folders), and rsync's report of
such a copy reads back to the real names."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from remote_config.model import SyncSection
from remote_config.rsync_cmd import (
    parse_rsync_dir,
    parse_rsync_sent,
    rsync_argv,
    rsync_excludes,
    unescape_name,
)
from sidecar.sync.scan import Scanner, load_rules

ODD = [
    "a b.py",
    "trail ",
    " lead",
    "nl\nname.py",
    "ünï/çodé.py",
    "w[1]*?.txt",
    "back\\slash",
    "back\\#012",
    "#hash",
    "- dash",
    "+ plus",
    "!bang",
    "a -> b",
]


def _tree(root: Path) -> None:
    def put(rel: str, data: bytes = b"x") -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)

    for name in ODD:
        put(name, name.encode())
        put(f"pkg/{name}", b"deep " + name.encode())
    put(".gitignore", b"*.log\n/build/\nsecret*\n!secret.keep\n[*]star\nw[[]2].txt\n")
    put("pkg/.gitignore", b"local.txt\n!keep.log\n*.tmp\n")
    for rel in (
        "x.log",
        "pkg/keep.log",
        "pkg/drop.log",
        "pkg/sub/deeper.log",
        "pkg/local.txt",
        "local.txt",
        "pkg/a.tmp",
        "b.tmp",
        "build/out.bin",
        "pkg/build/kept.bin",
        "secret.env",
        "secret.keep",
        "*star",
        "w[2].txt",
        "node_modules/x/index.js",
        "pkg/__pycache__/m.pyc",
        "__pycache__/n.pyc",
        ".git/HEAD",
        "data/big.bin",
        "pkg/data",  # a file named like an ignored folder: kept
        "x.orch-conflict-20260101T000000Z",
        "ok.py",
    ):
        put(rel)
    (root / "empty" / "deeper").mkdir(parents=True)
    (root / "ignored_empty.log").mkdir()
    (root / "link").symlink_to("ok.py")
    (root / "dirlink").symlink_to("pkg")
    (root / "dangling").symlink_to("nowhere")
    (root / "link.log").symlink_to("ok.py")  # an ignored symlink


def _everything(root: Path) -> tuple[set[str], set[str]]:
    files, dirs = set(), set()
    for folder, subdirs, names in os.walk(root):
        rel = os.path.relpath(folder, root)
        for d in subdirs:
            path = os.path.normpath(os.path.join(rel, d))
            (files if os.path.islink(os.path.join(folder, d)) else dirs).add(path)
        files.update(os.path.normpath(os.path.join(rel, n)) for n in names)
    return files, dirs


def test_root_transfer_rules_leave_out_exactly_what_orch_ignores(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _tree(src)
    scanner = Scanner(str(src), load_rules(str(src), SyncSection()))
    ignored: list[tuple[str, bool]] = []
    files, dirs = scanner.walk("", ignored)
    assert "pkg/keep.log" in files and "pkg/drop.log" not in files  # negation, nested file
    assert "pkg/data" in files and "pkg/build/kept.bin" in files
    rules = rsync_excludes([*files, *dirs], ignored)
    assert rules is not None
    assert "- __pycache__/" in rules  # ignored wherever met: one rule, also for new ones
    assert "- /data/" in rules  # "data" is a kept file's name too: anchored
    rules_file = tmp_path / "rules"
    rules_file.write_bytes(b"".join(r.encode() + b"\0" for r in rules))
    argv = rsync_argv("/dev/null", "unused", str(src), "~/x", None, exclude_from=str(rules_file))
    argv = [a for a in argv if a not in ("-e", "ssh -F /dev/null")]
    argv[-1] = f"{dst}/"  # a local copy: the same options, rules and report
    out = subprocess.run(argv, capture_output=True, check=True).stdout
    assert _everything(dst) == (set(files), set(dirs))
    lines = out.decode(errors="surrogateescape").split("\n")
    sent = dict(item for line in lines if (item := parse_rsync_sent(line)))
    regular = {f for f in files if not os.path.islink(src / f)}
    assert {p: h for p, h in sent.items() if p in regular} == {
        p: hashlib.md5((src / p).read_bytes()).hexdigest() for p in regular
    }
    links = {f for f in files if os.path.islink(src / f)} - {"a -> b", "pkg/a -> b"}
    assert {p: sent[p] for p in links} == {
        p: hashlib.md5(b"link:" + os.readlink(src / p).encode()).hexdigest() for p in links
    }
    assert {d for line in lines if (d := parse_rsync_dir(line))} == set(dirs)


def test_too_many_rules_fall_back_to_the_list() -> None:
    kept = [f"src/f{i}.py" for i in range(10)]
    ignored = [(f"src/f{i}.log", False) for i in range(20)]
    assert rsync_excludes(kept, ignored, limit=19) is None
    assert rsync_excludes(kept, ignored, limit=20) is not None
    # Kept somewhere else: each ignored one anchored; a folder's rule matches folders only.
    rules = rsync_excludes(["a/out", "b"], [("out", True), ("a/x[1]", False)])
    assert rules == ["- /out/", "- x\\[1]"]


def test_rsync_escapes_read_back() -> None:
    assert unescape_name("plain name") == "plain name"
    assert unescape_name("nl\\#012x") == "nl\nx"
    assert unescape_name("\\#303\\#274n.py") == "ün.py"
    assert unescape_name("back\\#134#012") == "back\\#012"
    assert parse_rsync_dir("orch-sent " + " " * 32 + " pkg/sub/") == "pkg/sub"
    assert parse_rsync_dir("orch-sent " + " " * 32 + " ./") is None
