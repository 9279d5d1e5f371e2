"""Watching the local tree: watchdog events, filtered and coalesced into batches of paths.

inotify (watchdog's native observer) is used when the user's inotify watch budget allows:
watchdog watches every folder, ignored ones too, and silently skips folders it cannot
watch once the limit is hit, so orch checks the budget first (`inotify_budget`). When it
does not fit, or the observer fails with ENOSPC/EMFILE, the watcher says so clearly and
falls back to polling (once a second) that never enters ignored folders.

Events are coalesced: a batch goes out once no event arrived for `QUIET_S`, or at the latest
`debounce_ms` after its first event, so an editor's save burst is one batch and a branch
switch becomes a few large ones.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from remote_config.sync import IgnoreRules, is_ignore_file

log = logging.getLogger("orch.sync")

QUIET_S = 0.004
POLL_INTERVAL_S = 1.0
FORCE_LIMIT_ENV = "ORCH_SYNC_INOTIFY_LIMIT"  # pretend the watch limit is this (for tests)


@dataclass(frozen=True)
class Budget:
    limit: int
    used: int
    needed: int

    @property
    def fits(self) -> bool:
        return self.used + self.needed <= self.limit


def inotify_budget(root: str) -> Budget:
    """The user's inotify watch limit, the watches in use, and what watching `root` needs."""
    forced = os.environ.get(FORCE_LIMIT_ENV)
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as handle:
            limit = int(handle.read())
    except (OSError, ValueError):
        limit = 1 << 30
    if forced:
        limit = int(forced)
    needed = 1 + sum(len(dirs) for _, dirs, _ in os.walk(root))
    return Budget(limit, _watches_in_use(), needed)


def _watches_in_use() -> int:
    """inotify watches held by this user's processes (from /proc/PID/fdinfo)."""
    uid, total = os.getuid(), 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            for fd in os.listdir(f"/proc/{pid}/fdinfo"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                    with open(f"/proc/{pid}/fdinfo/{fd}") as handle:
                        total += sum(1 for line in handle if line.startswith("inotify wd:"))
        except OSError:
            continue
    return total


def limit_message(budget: Budget) -> str:
    return (
        f"inotify watch limit reached: watching needs {budget.needed} watches, "
        f"{max(0, budget.limit - budget.used)} of fs.inotify.max_user_watches={budget.limit} "
        "are free; falling back to polling once a second (slower to notice edits). "
        "Raise the limit: sudo sysctl fs.inotify.max_user_watches=524288"
    )


class Watcher:
    """Feeds coalesced sets of changed relative paths to `on_batch` on the event loop."""

    def __init__(
        self,
        root: str,
        rules: Callable[[], IgnoreRules],
        on_batch: Callable[[set[str]], None],
        debounce_ms: int,
    ) -> None:
        self.root = root
        self.rules = rules
        self.on_batch = on_batch
        self.max_wait = max(debounce_ms, 1) / 1000
        self.loop = asyncio.get_running_loop()
        self.mode = "off"
        self.message: str | None = None
        self._observer: Any = None
        self._pending: set[str] = set()
        self._first = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> str:
        """Start watching; returns 'inotify' or 'polling' (with `message` saying why)."""
        from watchdog.observers import Observer

        budget = inotify_budget(self.root)
        if budget.fits:
            try:
                self._observer = self._schedule(Observer())
                self.mode = "inotify"
                return self.mode
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EMFILE):
                    raise
                budget = Budget(budget.limit, budget.limit, budget.needed)
        self.message = limit_message(budget)
        log.warning("%s", self.message)
        self._observer = self._schedule(self._polling_observer())
        self.mode = "polling"
        return self.mode

    def _polling_observer(self) -> Any:
        from watchdog.observers.polling import PollingObserverVFS

        def listdir(path: str | None) -> Iterator[os.DirEntry[str]]:
            rules = self.rules()
            base = os.path.relpath(path or self.root, self.root)
            base = "" if base == "." else base
            for entry in os.scandir(path):
                rel = f"{base}/{entry.name}" if base else entry.name
                is_dir = entry.is_dir(follow_symlinks=False)
                if not rules.ignored(rel, is_dir=is_dir):
                    yield entry

        return PollingObserverVFS(os.lstat, listdir, polling_interval=POLL_INTERVAL_S)

    def _schedule(self, observer: Any) -> Any:
        from watchdog.events import FileSystemEventHandler

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                if event.is_directory and event.event_type == "modified":
                    return  # a folder's mtime changes with every file in it: noise
                is_dir = bool(event.is_directory)
                paths = [(os.fsdecode(event.src_path), is_dir)]
                if getattr(event, "dest_path", ""):
                    paths.append((os.fsdecode(event.dest_path), is_dir))
                watcher.loop.call_soon_threadsafe(watcher._push, paths)

        observer.schedule(Handler(), self.root, recursive=True)
        observer.start()
        return observer

    def _push(self, paths: list[tuple[str, bool]]) -> None:
        rules = self.rules()
        for full, is_dir in paths:
            rel = os.path.relpath(full, self.root)
            if rel == "." or rel.startswith("../"):
                continue
            if rules.ignored_path(rel, is_dir) and not is_ignore_file(rel):
                continue
            self._pending.add(rel)
        if not self._pending:
            return
        now = self.loop.time()
        if self._timer is None:
            self._first = now
        else:
            self._timer.cancel()
        delay = max(0.0, min(QUIET_S, self._first + self.max_wait - now))
        self._timer = self.loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        self._timer = None
        batch, self._pending = self._pending, set()
        if batch:
            self.on_batch(batch)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        self.mode = "off"
