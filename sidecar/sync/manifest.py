"""The sync manifest: what orch last wrote to the remote, and a cache of local hashes.

One SQLite file per project and machine (`$ORCH_HOME/sync/<key>/manifest.db`). For each
path it keeps the remote side as orch last wrote it (size, mtime, mode, content hash: the
conflict check compares the remote against this) and the local stat it hashed (size, mtime,
ctime, inode), so an unchanged file is not read again. ctime cannot be set by tools that
fake mtimes (a branch switch, `cp -p`, `touch -r`), so a lying mtime still gets rehashed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from remote_config.sync import Entry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, mode INTEGER NOT NULL, hash TEXT,
    l_size INTEGER, l_mtime_ns INTEGER, l_ctime_ns INTEGER, l_ino INTEGER
);
CREATE TABLE IF NOT EXISTS dirs (path TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class LocalStat:
    """The local stat a hash was computed for."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int


class Manifest:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        path.chmod(0o600)

    def close(self) -> None:
        self.db.close()

    # -- reading -----------------------------------------------------------------------------
    def entries(self, paths: Iterable[str] | None = None) -> dict[str, Entry]:
        if paths is None:
            rows = self.db.execute("SELECT path, size, mtime_ns, mode, hash FROM files")
            return {r[0]: Entry(r[1], r[2], r[3], r[4]) for r in rows}
        out = {}
        for path in paths:
            row = self.db.execute(
                "SELECT size, mtime_ns, mode, hash FROM files WHERE path = ?", (path,)
            ).fetchone()
            if row is not None:
                out[path] = Entry(*row)
        return out

    def under(self, folder: str) -> list[str]:
        """Paths in the manifest inside `folder` (relative, no trailing slash)."""
        prefix = folder.rstrip("/") + "/"
        rows = self.db.execute(
            "SELECT path FROM files WHERE substr(path, 1, ?) = ?", (len(prefix), prefix)
        )
        return [r[0] for r in rows]

    def cached_hashes(self) -> dict[str, tuple[LocalStat, str]]:
        rows = self.db.execute(
            "SELECT path, l_size, l_mtime_ns, l_ctime_ns, l_ino, hash FROM files "
            "WHERE l_size IS NOT NULL AND hash IS NOT NULL"
        )
        return {r[0]: (LocalStat(r[1], r[2], r[3], r[4]), r[5]) for r in rows}

    def cached_hash(self, path: str) -> tuple[LocalStat, str] | None:
        row = self.db.execute(
            "SELECT l_size, l_mtime_ns, l_ctime_ns, l_ino, hash FROM files WHERE path = ? "
            "AND l_size IS NOT NULL AND hash IS NOT NULL",
            (path,),
        ).fetchone()
        return None if row is None else (LocalStat(*row[:4]), row[4])

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation", "0") or 0)

    # -- writing -----------------------------------------------------------------------------
    def record(self, rows: Iterable[tuple[str, Entry, LocalStat | None]]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        path,
                        e.size,
                        e.mtime_ns,
                        e.mode,
                        e.hash,
                        *(
                            (s.size, s.mtime_ns, s.ctime_ns, s.ino)
                            if s
                            else (None, None, None, None)
                        ),
                    )
                    for path, e, s in rows
                ],
            )

    def forget(self, paths: Iterable[str]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])

    def dirs(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT path FROM dirs")}

    def record_dirs(self, added: Iterable[str], removed: Iterable[str]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO dirs VALUES (?)", [(d,) for d in added])
            self.db.executemany("DELETE FROM dirs WHERE path = ?", [(d,) for d in removed])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def set_generation(self, generation: int) -> None:
        self.set_meta("generation", str(generation))
