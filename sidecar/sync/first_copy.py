"""The first copy of a tree (no manifest yet): one rsync run of every file, and the manifest
recorded from what rsync reported, with no per-file work before the copy and no remote stat.

Where the time went before (issue 12, item 11; docs/performance.md): besides rsync itself, a
local `lstat` of every file before the copy (to see which ones changed while rsync read them),
a remote `stat` of every file after it (20,000 paths sent, stat'ed and sent back) and the
manifest rows built from both; and rsync itself run with `--files-from` (twice the CPU of
rsync walking the tree). Now:

- rsync copies the tree as a root transfer (incremental recursion) with filter rules made from
  orch's walk (`rsync_excludes` in `remote_config/rsync_cmd.py`: what the ignore rules left
  out), the list form only when that needs too many rules. What rsync sends that the walk did
  not see (made since) is recorded when the rules keep it, else removed there again at the end.
- One local `lstat` per file, once rsync reports it sent (it has read it by then), done with
  the manifest row in a thread while rsync goes on (`Recorder`; rows written in chunks, so a
  copy cut short still records what it sent). A file whose ctime is older than the moment
  rsync started (less a margin for the kernel's coarse clock) cannot have changed while rsync
  read it, so its stat is the one of the content rsync sent and is kept as the hash cache. A
  newer ctime (an edit during the copy) keeps no cache and the file is sent again (`retry`).
- No remote stat: each entry holds rsync's md5 of what it sent and the size and mtime rsync
  copied, with the remote inode and ctime unknown. The helper decides such entries by their
  content (`same` in `remote_config/sync_helper.py`), so no remote edit can pass for orch's own, and
  the idle drift check or the next full sync records the remote stat (`SyncEngine._verify`).
- A file rsync sent that is gone here by the time of the `lstat` still gets its entry (the
  content is known), so the next batch removes it there: never an orphan on the remote.

The write-ahead record (every path the copy may write, committed before rsync starts) and the
remote sync lock held through the copy are as for every other batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from queue import SimpleQueue
from stat import S_IMODE, S_ISLNK, S_ISREG
from typing import Any

from remote_config.rsync_cmd import rsync_excludes
from remote_config.sync import IgnoreRules
from sidecar.sync.engine_base import DIR_MARK, BatchResult, Progress
from sidecar.sync.manifest import FileRow, Manifest
from sidecar.sync.rsync_path import RsyncPath
from sidecar.sync.scan import hash_bytes

# A file whose ctime is within this of rsync's start may have changed while rsync read it.
# ctime comes from the kernel's coarse clock (a tick behind at most); a second is ample.
RACE_MARGIN_NS = 1_000_000_000

# The local state after the copy: (size, mtime_ns, ctime_ns, ino, mode, symlink hash or None)
After = tuple[int, int, int, int, int, str | None]


class FirstCopy(RsyncPath):
    async def _first_sync(
        self,
        files: list[str],
        dirs: list[str],
        progress: Progress | None,
        ignored: list[tuple[str, bool]] | None = None,
    ) -> BatchResult:
        """No manifest yet: copy everything with rsync; its report fills the manifest.

        With `ignored` (what the walk left out) and few enough rules for it, rsync copies the
        tree as a root transfer less those entries; else the walked paths by list."""
        phase = self.phase
        result = BatchResult(transport="rsync", files=len(files))
        generation = self.manifest.generation + 1
        self._begin = self.manifest.token(generation)

        def write_ahead() -> list[str] | None:
            self.manifest.add_pending_paths(files)
            self.manifest.record_dirs(dirs, [])
            # Made there? Not sure until the copy ends (rows of a cut copy stay recorded, so
            # the next full sync is not a first copy: it makes these folders again).
            self.manifest.add_pending(dict.fromkeys(dirs, DIR_MARK))
            return None if ignored is None else rsync_excludes([*files, *dirs], ignored)

        # The record is written (in a thread) while the helper starts and lists the remote
        # folder; both are done before rsync starts.
        with phase("write-ahead record + remote listing"):
            excludes, _ = await asyncio.gather(
                asyncio.to_thread(write_ahead), self._precheck(files, {}, {}, result)
            )
        started_ns = time.time_ns()
        walked = None if excludes is None else (set(files), set(dirs))
        recorder = Recorder(self.root, self.manifest, started_ns, walked, self.rules)
        what = "rsync of the tree" if excludes is not None else "rsync --files-from"
        try:
            with phase(f"{what} (files recorded as rsync reports them)"):
                sent = await self._rsync(
                    [*dirs, *files],
                    progress,
                    recorder.sent,
                    excludes=excludes,
                    on_dirs=recorder.dirs if excludes is not None else None,
                )
        except BaseException:
            with contextlib.suppress(Exception):  # what it reported sent stays recorded
                await recorder.finish()
            raise
        with phase("recording the last reported"):
            await recorder.finish()
        result.retry |= recorder.retry
        rest = [p for p in files if p not in recorder.seen]  # symlinks; files not sent
        with phase("local stat of the rest + end of batch"):
            ops = recorder.unwanted_ops()
            replies, after = await asyncio.gather(
                self._request(ops, generation=generation),
                asyncio.to_thread(stat_after, self.root, rest),
            )
        for op, reply in zip(ops, replies, strict=False):
            self._note(op["path"], reply, result)
        with phase("manifest write"):
            self.manifest.record_rows(first_rows(rest, after, sent, started_ns, result.retry))
            self.manifest.record_dirs(sorted(recorder.new_dirs), [])
            self.manifest.set_generation(generation)
        return result


class Recorder:
    """Records each file rsync reports sent (rsync has read it by then) in a thread of its
    own while rsync goes on: its stat, its manifest row, written in chunks.

    In a copy of the whole tree (`walked`: the files and folders of orch's walk), an entry
    rsync reports that the walk did not see was made since: recorded as any other when the
    ignore rules keep it, else left for removal there (`unwanted_ops`)."""

    CHUNK = 2000

    def __init__(
        self,
        root: str,
        manifest: Manifest,
        started_ns: int,
        walked: tuple[set[str], set[str]] | None = None,
        rules: IgnoreRules | None = None,
    ) -> None:
        self.root = root
        self.manifest = manifest
        self.started_ns = started_ns
        self.walked = walked
        self.rules = rules
        self.seen: set[str] = set()
        self.retry: set[str] = set()
        self.new_dirs: set[str] = set()  # folders made after the walk, kept by the rules
        self.unwanted: dict[str, str] = {}  # ignored files made after the walk: path -> md5
        self.unwanted_dirs: set[str] = set()
        self._fresh = False  # a file made since the walk is among the rows not yet written
        self._queue: SimpleQueue[list[tuple[str, str]] | None] = SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="orch-first-copy", daemon=True)
        self._thread.start()

    def sent(self, items: list[tuple[str, str]]) -> None:
        self._queue.put(items)

    def dirs(self, folders: list[str]) -> None:
        """Folders rsync reports (only those the walk did not see matter)."""
        self._queue.put([(folder, "") for folder in folders])

    async def finish(self) -> None:
        """Wait until every reported file is recorded (raises what the thread met)."""
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise self._error

    def unwanted_ops(self) -> list[dict[str, Any]]:
        """Helper ops removing what rsync sent that the ignore rules leave out: the files if
        they still hold what rsync sent, then the folders if empty (deepest first)."""
        ops: list[dict[str, Any]] = [
            {"op": "delete", "path": p, "expect": [-1, -1, digest, None, None]}
            for p, digest in sorted(self.unwanted.items())
        ]
        ops += [{"op": "rmdir", "path": d} for d in sorted(self.unwanted_dirs, reverse=True)]
        return ops

    def _run(self) -> None:
        rows: list[FileRow] = []
        # Below rsync's processes on a busy machine (Linux: per thread); it catches up at the
        # end. Rows written in chunks as before.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            while (items := self._queue.get()) is not None:
                if self.walked is not None:
                    items = self._sort_new(items)
                after = stat_after(self.root, [path for path, _ in items])
                for path, digest in items:
                    self.seen.add(path)
                    row = first_row(path, after.get(path), digest, self.started_ns, self.retry)
                    if row is not None:
                        rows.append(row)
                # A file made since the walk is in no write-ahead record: its row is
                # committed at once, so a copy cut short right after still removes it there
                # once it is deleted here (the window left is rsync's write to this commit).
                if len(rows) >= self.CHUNK or self._fresh:
                    self.manifest.record_rows(rows)
                    rows = []
                    self._fresh = False
            self.manifest.record_rows(rows)
        except BaseException as exc:  # said by finish(); the rest of the queue is left
            self._error = exc

    def _sort_new(self, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The files of `items` to record; folders and ignored files made since the walk
        are set aside."""
        assert self.walked is not None and self.rules is not None
        files, dirs = self.walked
        keep = []
        for path, digest in items:
            if not digest:  # a folder (a line read as one is checked here)
                full = f"{self.root}/{path}"
                if path in dirs or os.path.islink(full) or not os.path.isdir(full):
                    continue
                if self.rules.ignored_path(path, is_dir=True):
                    self.unwanted_dirs.add(path)
                else:
                    self.new_dirs.add(path)
            elif path in files:
                keep.append((path, digest))
            elif not self.rules.ignored_path(path):
                keep.append((path, digest))
                self._fresh = True
            else:
                self.unwanted[path] = digest
        return keep


def stat_after(root: str, files: list[str]) -> dict[str, After]:
    """Each file's state after rsync read it (absent: gone or not a file or symlink)."""
    out: dict[str, After] = {}
    lstat = os.lstat
    for path in files:
        full = f"{root}/{path}"
        try:
            st = lstat(full)
            link = None
            if S_ISLNK(st.st_mode):
                link = hash_bytes(b"link:" + os.readlink(full).encode())
            elif not S_ISREG(st.st_mode):
                continue
        except OSError:
            continue
        mode = S_IMODE(st.st_mode)
        out[path] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, mode, link)
    return out


def first_rows(
    files: list[str],
    after: dict[str, After],
    sent: dict[str, str],
    started_ns: int,
    retry: set[str],
) -> list[FileRow]:
    """Manifest rows for a first copy, in the table's column order; the paths to send
    again are added to `retry`."""
    rows = (first_row(p, after.get(p), sent.get(p), started_ns, retry) for p in files)
    return [row for row in rows if row is not None]


def first_row(
    path: str, found: After | None, digest: str | None, started_ns: int, retry: set[str]
) -> FileRow | None:
    """The manifest row of one file of a first copy (pure: see the module docstring)."""
    if found is None:
        retry.add(path)
        if digest is not None:  # sent, then removed here: the next batch removes it there
            return (path, -1, -1, 0o644, digest, None, None, None, None, None, None)
        return None
    size, mtime_ns, ctime_ns, ino, mode, link = found
    stable = ctime_ns < started_ns - RACE_MARGIN_NS
    if digest is None:
        # Not reported sent: a symlink whose report line could not be read back exactly
        # (its target then known only if it did not change during the copy), or a file
        # rsync did not send (it vanished and came back, unreadable): nothing written.
        if link is None:
            retry.add(path)
            return None
        digest = link if stable else None  # None: content unknown, never a conflict
    # The remote side: what rsync copied (size, mtime, mode) and its checksum of what it
    # sent; the remote inode and ctime unknown (None), so the helper goes by content.
    if stable:
        return (path, size, mtime_ns, mode, digest, size, mtime_ns, ctime_ns, ino, None, None)
    retry.add(path)
    return (path, size, mtime_ns, mode, digest, None, None, None, None, None, None)
