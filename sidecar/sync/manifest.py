"""The sync manifest: what orch last wrote to the remote, and a cache of local hashes.

One SQLite file per project and machine (`$ORCH_HOME/sync/<key>/manifest.db`). For each
path it keeps the remote side as orch last wrote it (size, mtime, mode, content hash: the
conflict check compares the remote against this) and the local stat it hashed (size, mtime,
ctime, inode), so an unchanged file is not read again. ctime cannot be set by tools that
fake mtimes (a branch switch, `cp -p`, `touch -r`), so a lying mtime still gets rehashed.
The remote side keeps the remote inode and ctime too, for the same reason.

`pending` is a write-ahead record: every path a batch may create or change on the remote
is written here (committed) before the batch is sent and cleared once its result is
recorded, so a batch cut in half by a dropped connection still leaves a record of what
orch may have written; the next full sync removes such paths when they are gone locally.
`sync_id` (random, made with the manifest) names this sync in the remote's generation token.
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
    l_size INTEGER, l_mtime_ns INTEGER, l_ctime_ns INTEGER, l_ino INTEGER,
    r_ino INTEGER, r_ctime_ns INTEGER
);
CREATE TABLE IF NOT EXISTS dirs (path TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (path TEXT PRIMARY KEY, hash TEXT);
"""


# A `files` row: path, the remote side (size, mtime_ns, mode, hash), the local stat the hash
# was computed for (size, mtime_ns, ctime_ns, ino) and the remote inode and ctime.
FileRow = tuple[
    str, int, int, int, str | None, int | None, int | None, int | None, int | None, None, None
]


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
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(files)")}
        for column in ("r_ino", "r_ctime_ns"):  # manifests made by an earlier orch
            if column not in columns:
                self.db.execute(f"ALTER TABLE files ADD COLUMN {column} INTEGER")
        path.chmod(0o600)

    def close(self) -> None:
        self.db.close()

    # -- reading -----------------------------------------------------------------------------
    def entries(self, paths: Iterable[str] | None = None) -> dict[str, Entry]:
        if paths is None:
            rows = self.db.execute(
                "SELECT path, size, mtime_ns, mode, hash, r_ino, r_ctime_ns FROM files"
            )
            return {r[0]: Entry(*r[1:]) for r in rows}
        out = {}
        for path in paths:
            row = self.db.execute(
                "SELECT size, mtime_ns, mode, hash, r_ino, r_ctime_ns FROM files WHERE path = ?",
                (path,),
            ).fetchone()
            if row is not None:
                out[path] = Entry(*row)
        return out

    def page(self, after: str, limit: int) -> dict[str, Entry]:
        """Up to `limit` entries whose paths sort after `after` (a round-robin walk)."""
        rows = self.db.execute(
            "SELECT path, size, mtime_ns, mode, hash, r_ino, r_ctime_ns FROM files "
            "WHERE path > ? ORDER BY path LIMIT ?",
            (after, limit),
        )
        return {r[0]: Entry(*r[1:]) for r in rows}

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

    @property
    def sync_id(self) -> str:
        value = self.get_meta("sync_id")
        if value is None:
            import secrets

            value = secrets.token_hex(8)
            self.set_meta("sync_id", value)
        return value

    def token(self, generation: int | None = None) -> str:
        """The remote's name for a generation of this sync: `<sync id>-<generation>`."""
        return f"{self.sync_id}-{self.generation if generation is None else generation}"

    def pending(self) -> dict[str, str | None]:
        return {r[0]: r[1] for r in self.db.execute("SELECT path, hash FROM pending")}

    # -- writing -----------------------------------------------------------------------------
    def record(self, rows: Iterable[tuple[str, Entry, LocalStat | None]]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        e.ino,
                        e.ctime_ns,
                    )
                    for path, e, s in rows
                ],
            )

    def record_rows(self, rows: Iterable[FileRow]) -> None:
        """`record` for rows already in the table's column order (the first copy's 20,000)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

    def add_pending_paths(self, paths: Iterable[str]) -> None:
        """`add_pending` for paths whose content is not known before they are sent."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO pending VALUES (?, NULL)", ((p,) for p in paths)
            )

    def add_pending(self, rows: dict[str, str | None]) -> None:
        """Before a batch: the paths it may write (and the content hash it sends)."""
        if rows:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany(
                    "INSERT OR REPLACE INTO pending VALUES (?, ?)", list(rows.items())
                )

    def clear_pending(self, paths: Iterable[str] | None = None) -> None:
        with self.db:
            self.db.execute("BEGIN")
            if paths is None:
                self.db.execute("DELETE FROM pending")
            else:
                self.db.executemany("DELETE FROM pending WHERE path = ?", [(p,) for p in paths])

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
