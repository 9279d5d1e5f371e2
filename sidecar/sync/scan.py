"""The local side of sync: loading ignore rules, walking the tree, hashing files.

A file's hash is reused while its (size, mtime, ctime, inode) are unchanged; anything else
is read again, so content decides what is sent even when mtimes lie. Folders matched by the
ignore rules are pruned without being entered.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from remote_config.model import SyncSection
from remote_config.sync import IGNORE_FILES, IgnoreRules, LocalFile
from sidecar.sync.manifest import LocalStat

_CHUNK = 1 << 20


def _md5(data: bytes = b"") -> hashlib._Hash:
    # md5 detects changes (as rsync's own checksums do); it is not a security boundary.
    return hashlib.md5(data, usedforsecurity=False)


def hash_bytes(data: bytes) -> str:
    return _md5(data).hexdigest()


def hash_file(path: str) -> tuple[str, bytes | None, os.stat_result]:
    """(hash, content if small, stat taken before reading); raises OSError if unreadable."""
    with open(path, "rb") as handle:
        before = os.fstat(handle.fileno())
        if before.st_size <= 4 * _CHUNK:
            data = handle.read()
            return hash_bytes(data), data, before
        digest = _md5()
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
        return digest.hexdigest(), None, before


def local_stat(st: os.stat_result) -> LocalStat:
    return LocalStat(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def load_rules(root: str, section: SyncSection, folders: list[str] | None = None) -> IgnoreRules:
    """Ignore rules from the config and the ignore files in `folders` (default: walk all)."""
    names = IGNORE_FILES if section.use_gitignore else (".orchignore",)
    texts: dict[str, str] = {}
    base = IgnoreRules.build(default_excludes=section.default_excludes, exclude=section.exclude)
    candidates = folders if folders is not None else _folders_for_rules(root, base, names)
    for folder in candidates:
        chunks = []
        for name in names:
            try:
                chunks.append(Path(root, folder, name).read_text(errors="replace"))
            except OSError:
                continue
        if chunks:
            texts[folder] = "\n".join(chunks)
    top = texts.pop("", "")
    return IgnoreRules.build(
        default_excludes=section.default_excludes,
        exclude=[*section.exclude, top],
        ignore_files=texts,
    )


def _folders_for_rules(root: str, base: IgnoreRules, names: tuple[str, ...]) -> list[str]:
    """Folders holding an ignore file, pruning what the defaults and config already ignore."""
    out = []
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        rel = "" if rel == "." else rel
        if any(n in files for n in names):
            out.append(rel)
        dirs[:] = [d for d in dirs if not base.ignored(_join(rel, d), is_dir=True)]
    return out


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


@dataclass
class Snapshot:
    """The local tree at one moment: files with hashes, and every folder."""

    files: dict[str, LocalFile] = field(default_factory=dict)
    stats: dict[str, LocalStat] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    contents: dict[str, bytes] = field(default_factory=dict)  # small files read while hashing


class Scanner:
    """Walks and hashes under `root` with the given rules and a hash cache."""

    def __init__(self, root: str, rules: IgnoreRules) -> None:
        self.root = root
        self.rules = rules

    def walk(
        self, start: str = "", ignored: list[tuple[str, bool]] | None = None
    ) -> tuple[list[str], list[str]]:
        """(files, folders) under `start` (relative), ignored ones pruned; each entry left
        out is added to `ignored` as (path, is a folder) when it is given."""
        files: list[str] = []
        dirs: list[str] = []
        skip = ignored.append if ignored is not None else lambda _: None
        top = os.path.join(self.root, start) if start else self.root
        for folder, subdirs, names in os.walk(top):
            rel = os.path.relpath(folder, self.root)
            rel = "" if rel == "." else rel
            keep = []
            for d in subdirs:
                path = _join(rel, d)
                if os.path.islink(os.path.join(folder, d)):
                    if not self.rules.ignored(path):
                        files.append(path)  # a symlink to a folder syncs as a symlink
                    else:
                        skip((path, False))
                elif not self.rules.ignored(path, is_dir=True):
                    keep.append(d)
                    dirs.append(path)
                else:
                    skip((path, True))
            subdirs[:] = keep
            for name in names:
                path = _join(rel, name)
                if not self.rules.ignored(path):
                    files.append(path)
                else:
                    skip((path, False))
        return files, dirs

    def state(
        self, rel: str, cache: dict[str, tuple[LocalStat, str]], keep_content: bool = False
    ) -> tuple[LocalFile, LocalStat, bytes | None] | None:
        """The file's state (None when it is gone or not a regular file or symlink)."""
        full = os.path.join(self.root, rel)
        try:
            st = os.lstat(full)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(full).encode()
            return self._file(st, hash_bytes(b"link:" + target)), local_stat(st), target
        if not stat.S_ISREG(st.st_mode):
            return None
        cached = cache.get(rel)
        lst = local_stat(st)
        if cached is not None and cached[0] == lst and not keep_content:
            return self._file(st, cached[1]), lst, None
        try:
            digest, data, before = hash_file(full)
        except OSError:
            return None
        return self._file(before, digest), local_stat(before), data

    @staticmethod
    def file_of(st: os.stat_result, digest: str) -> LocalFile:
        return Scanner._file(st, digest)

    @staticmethod
    def _file(st: os.stat_result, digest: str) -> LocalFile:
        return LocalFile(st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode), digest)

    def is_dir(self, rel: str) -> bool:
        full = os.path.join(self.root, rel)
        return os.path.isdir(full) and not os.path.islink(full)

    def exists(self, rel: str) -> bool:
        return os.path.lexists(os.path.join(self.root, rel))
