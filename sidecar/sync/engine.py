"""The sync engine: turns dirty paths (or the whole tree) into remote changes.

It owns one project+machine sync: `sync_paths` handles a batch of paths the watcher saw
change; `full_sync` reconciles the whole tree (start-up, `orch sync now`, after a
reconnect), verifying what orch wrote there first (drift). Small batches go through the
helper in one request; large ones and the first copy through rsync (`rsync_path.py`); the
connection, requests and batch results live in `engine_base.py`. A dropped connection raises
`HelperGone`; the caller (`service.py`) pauses and reconnects.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

from remote_config.sync import (
    Entry,
    LocalFile,
    Plan,
    choose_transport,
    gone_parents,
    is_ignore_file,
    plan_changes,
)
from sidecar.sync.engine_base import (
    DIR_MARK,
    BatchResult,
    Conflict,
    Progress,
    log,
    parent_dirs,
    read_bytes,
)
from sidecar.sync.first_copy import FirstCopy
from sidecar.sync.manifest import LocalStat
from sidecar.sync.scan import hash_bytes

__all__ = ["BatchResult", "Conflict", "SyncEngine"]

DRIFT_PAGE = 2000  # files verified per idle drift check (see SyncEngine.check_drift)


class SyncEngine(FirstCopy):
    """One project+machine sync: batches of dirty paths and full reconciles."""

    # -- batches -----------------------------------------------------------------------------
    async def sync_paths(self, dirty: Iterable[str]) -> BatchResult:
        """Make the remote match the local tree for `dirty` paths (files or folders)."""
        dirty = set(dirty)
        if any(is_ignore_file(p) for p in dirty):
            self.reload_rules()
            return await self.full_sync()
        local, contents, new_dirs, gone = self._expand(dirty)
        entries = self.manifest.entries(local)
        exists = {d: self.scanner.exists(d) for p in local for d in parent_dirs(p)}
        plan = plan_changes(
            {p: s for p, (s, _) in local.items()},
            entries,
            new_dirs=new_dirs,
            gone_dirs=sorted(
                {*gone, *gone_parents([p for p, v in local.items() if v[0] is None], exists)}
            ),
        )
        stats = {p: st for p, (_, st) in local.items() if st is not None}
        return await self._apply(plan, local, stats, contents, entries)

    def _expand(
        self, dirty: set[str]
    ) -> tuple[
        dict[str, tuple[LocalFile | None, LocalStat | None]], dict[str, bytes], list[str], list[str]
    ]:
        cache: dict[str, tuple[LocalStat, str]] = {}
        local: dict[str, tuple[LocalFile | None, LocalStat | None]] = {}
        contents: dict[str, bytes] = {}
        new_dirs: list[str] = []
        gone: list[str] = []
        candidates: set[str] = set()
        known = self.manifest.dirs()
        for path in dirty:
            is_dir = self.scanner.is_dir(path)
            if self.rules.ignored_path(path, is_dir=is_dir):
                continue
            if is_dir:
                files, dirs = self.scanner.walk(path)
                candidates.update(files)
                new_dirs += [d for d in (path, *dirs) if d not in known]
                candidates.update(self.manifest.under(path))
                here = set(dirs)
                gone += [d for d in known if d.startswith(path + "/") and d not in here]
            elif self.scanner.exists(path):
                candidates.add(path)
            else:
                candidates.add(path)
                under = self.manifest.under(path)
                candidates.update(under)
                prefix = path + "/"
                gone += [d for d in known if d == path or d.startswith(prefix)]
        for path in candidates:
            hit = self.manifest.cached_hash(path)
            if hit is not None:
                cache[path] = hit
            found = self.scanner.state(path, cache, keep_content=True)
            if found is None:
                local[path] = (None, None)
                continue
            state, lst, data = found
            local[path] = (state, lst)
            if data is not None:
                contents[path] = data
        return local, contents, new_dirs, gone

    async def full_sync(self, progress: Progress | None = None) -> BatchResult:
        """Reconcile the whole tree with the manifest (new, changed and deleted files)."""
        self.connect_soon()  # the handshake and the helper's start overlap the local walk
        ignored: list[tuple[str, bool]] = []  # what the walk left out (a first copy's rules)
        with self.phase("local walk"):
            files, dirs = await asyncio.to_thread(self.scanner.walk, "", ignored)
        entries = self.manifest.entries()
        present = set(files)
        # Paths a batch cut short may have written: what they may hold is no conflict, and
        # those gone here since are removed there (the drop-and-rename orphans).
        pending = self.manifest.pending()
        self._alt = {p: h for p, h in pending.items() if h and h != DIR_MARK}
        unsure = {p for p, h in pending.items() if h == DIR_MARK}  # a cut batch's folders
        orphans = [
            p
            for p in self._alt
            if p not in present and p not in entries and not self.rules.ignored_path(p)
        ]
        early = BatchResult()
        if orphans:
            ops = [
                {"op": "delete", "path": p, "expect": None, "alt": [self._alt[p]]} for p in orphans
            ]
            replies = await self._request(ops)
            for path, reply in zip(orphans, replies, strict=False):
                self._note(path, reply, early)
            self.manifest.clear_pending(orphans)
        if not entries:
            result = await self._first_sync(files, dirs, progress, ignored)
            with self.phase("manifest write"):
                self.manifest.clear_pending()
            result.conflicts += early.conflicts
            self._log_phases(result, "first copy")
            return result
        cache = self.manifest.cached_hashes()
        local: dict[str, tuple[LocalFile | None, LocalStat | None]] = {}

        def hash_all() -> None:
            for path in files:
                found = self.scanner.state(path, cache)
                local[path] = (found[0], found[1]) if found else (None, None)

        with self.phase("local hash"):
            await asyncio.to_thread(hash_all)
        with self.phase("remote verify"):
            drifted = await self._verify(
                entries, [p for p in entries if p in local and local[p][0] is not None]
            )
        for path in entries:
            if path not in present and not self.rules.ignored_path(path):
                local[path] = (None, None)
        exists = {d: True for d in dirs}
        gone = [p for p, v in local.items() if v[0] is None]
        known = self.manifest.dirs()
        present_dirs = set(dirs)
        lost = [d for d in known if d not in present_dirs and not self.rules.ignored_path(d, True)]
        plan = plan_changes(
            {p: s for p, (s, _) in local.items()},
            entries,
            new_dirs=[d for d in dirs if d not in known or d in unsure],
            gone_dirs=[*gone_parents(gone, exists), *lost],
        )
        plan.puts += sorted(p for p in drifted if p not in plan.puts and local[p][0] is not None)
        stats = {p: st for p, (_, st) in local.items() if st is not None}
        with self.phase("apply"):
            result = await self._apply(plan, local, stats, {}, entries, progress)
        # A path a cut batch may have been writing differs there by orch's doing, not drift.
        result.drift = sorted(p for p in drifted if p not in pending)
        result.conflicts += early.conflicts
        self.manifest.clear_pending()
        self._alt = {}
        # Ignored paths orch wrote earlier stay on the remote but are no longer tracked.
        stale = [p for p in entries if self.rules.ignored_path(p)]
        if stale:
            self.manifest.forget(stale)
        self._log_phases(result, "full sync")
        return result

    def _log_phases(self, result: BatchResult, what: str) -> None:
        result.phases = self.phase.take()
        shown = ", ".join(f"{k} {v:.3f}" for k, v in result.phases.items())
        extra = {"phases": result.phases}
        log.info("sync: %s of %d file(s), seconds: %s", what, result.files, shown, extra=extra)

    async def check_drift(self, limit: int = DRIFT_PAGE) -> list[str]:
        """Verify the next `limit` files orch wrote there, in path order, wrapping around (so
        every call costs at most `limit` remote stats): those changed behind orch's back."""
        entries = self.manifest.page(self._drift_after, limit)
        if not entries and self._drift_after:
            self._drift_after = ""
            entries = self.manifest.page("", limit)
        if not entries:
            return []
        self._drift_after = max(entries)
        return sorted(await self._verify(entries, list(entries), sweep=False))

    async def _verify(
        self, entries: dict[str, Entry], paths: list[str], sweep: bool = True
    ) -> set[str]:
        """Remote files that changed behind orch's back (drift), among those orch wrote.

        The remote compares size, mtime, inode and ctime with what orch recorded, and hashes
        the file when they differ; an unchanged file whose ctime moved (a snapshot's hard
        link, a chmod) gets its new stat recorded, so it is hashed once.
        """
        ops: list[dict[str, Any]] = [{"op": "sweep"}] if sweep else []
        ops += [{"op": "verify", "path": p, "expect": entries[p].expect()} for p in paths]
        replies = (await self._request(ops))[len(ops) - len(paths) :]
        drifted: set[str] = set()
        moved: list[tuple[str, Entry, LocalStat | None]] = []
        for path, reply in zip(paths, replies, strict=False):
            entry = entries[path]
            stat = reply.get("stat")
            if reply.get("drift"):
                drifted.add(path)
            elif stat and list(stat[:4]) != [entry.size, entry.mtime_ns, entry.ino, entry.ctime_ns]:
                hit = self.manifest.cached_hash(path)
                fresh = Entry.written(stat, entry.mode, entry.hash)
                moved.append((path, fresh, hit[0] if hit else None))
        self.manifest.record(moved)
        return drifted

    # -- applying a plan ---------------------------------------------------------------------
    async def _apply(
        self,
        plan: Plan,
        local: dict[str, tuple[LocalFile | None, LocalStat | None]],
        stats: dict[str, LocalStat],
        contents: dict[str, bytes],
        entries: dict[str, Entry],
        progress: Progress | None = None,
    ) -> BatchResult:
        result = BatchResult()
        if not plan:
            return result
        generation = self.manifest.generation + 1
        result.files = plan.count
        self._begin = self.manifest.token(generation)
        # Write-ahead: what this batch may create survives a batch cut in half (orphans).
        self.manifest.add_pending(
            {
                **{p: (s.hash if (s := local[p][0]) else None) for p in plan.puts},
                **{d: (s.hash if (s := local[d][0]) else None) for _, d in plan.moves},
            }
        )
        # Every folder the batch may create: those it makes, and the parents the helper
        # (makedirs) and rsync (implied folders) make on their own for each file, rename and
        # folder, so a folder orch made is removed there once it is gone here. A batch may
        # name a new folder only by a deeper path (the tree changed while it was planned: the
        # parent was gone when the batch looked at it, or its event went to another batch).
        sent = [*plan.puts, *(d for _, d in plan.moves), *plan.mkdirs]
        folders = sorted({*plan.mkdirs, *(d for p in sent for d in parent_dirs(p))})
        self.manifest.record_dirs(folders, [])
        self.manifest.add_pending(dict.fromkeys(folders, DIR_MARK))  # made there? not sure yet
        self.kept_dirs = []
        if plan.moves:
            await self._moves(plan, local, entries)
        states = {p: local[p][0] for p in plan.puts}
        sizes = [s.size for s in states.values() if s is not None]
        result.transport = choose_transport(sizes) if plan.puts else "helper"
        if result.transport == "helper":
            await self._helper_batch(plan, local, contents, entries, generation, result)
        else:
            await self._rsync_batch(plan, local, stats, entries, generation, result, progress)
        self.manifest.set_generation(generation)
        self.manifest.clear_pending([*sent, *folders])  # (`_moves` emptied plan.moves)
        # A folder gone here that this batch itself filled there (walked here just before it
        # went: the tree changed while the batch was planned) is looked at again next batch,
        # so it is removed there without waiting for a full sync.
        result.retry |= {d for d in self.kept_dirs if any(p.startswith(d + "/") for p in sent)}
        return result

    async def _moves(
        self,
        plan: Plan,
        local: dict[str, tuple[LocalFile | None, LocalStat | None]],
        entries: dict[str, Entry],
    ) -> None:
        ops = [
            {"op": "move", "src": s, "path": d, "expect": entries[s].expect()}
            for s, d in plan.moves
        ]
        replies = await self._request(ops, hold=True)  # the batch goes on under the lock
        done: list[tuple[str, Entry, LocalStat | None]] = []
        for (src, dst), reply in zip(plan.moves, replies, strict=True):
            state, lst = local[dst]
            if reply.get("ok") and state is not None:
                done.append((dst, Entry.written(reply["stat"], state.mode, state.hash), lst))
            else:  # the remote differs from what orch wrote: send it as a delete + put
                plan.deletes.append(src)
                plan.puts.append(dst)
        self.manifest.record(done)
        self.manifest.forget([s for (s, d) in plan.moves if d in {r[0] for r in done}])
        plan.moves = []

    async def _helper_batch(
        self,
        plan: Plan,
        local: dict[str, tuple[LocalFile | None, LocalStat | None]],
        contents: dict[str, bytes],
        entries: dict[str, Entry],
        generation: int,
        result: BatchResult,
    ) -> None:
        ops: list[dict[str, Any]] = [{"op": "mkdir", "path": d} for d in plan.mkdirs]
        payloads: list[bytes] = []
        puts: list[str] = []
        for path in plan.puts:
            state, _ = local[path]
            data = contents.get(path) if state is None else self._content(path, state, contents)
            if state is None or data is None:
                result.retry.add(path)  # a large file or changed since: the next batch
                continue
            known = entries.get(path)
            op = {
                "op": "put",
                "path": path,
                "size": len(data),
                "mode": state.mode,
                "mtime_ns": state.mtime_ns,
                "hash": state.hash,
                "expect": known.expect() if known else None,
                "alt": self._alts(path),
            }
            if os.path.islink(os.path.join(self.root, path)):
                op["link"] = True
            ops.append(op)
            payloads.append(data)
            puts.append(path)
        ops += [
            {"op": "delete", "path": p, "expect": entries[p].expect(), "alt": self._alts(p)}
            for p in plan.deletes
        ]
        ops += [{"op": "rmdir", "path": d} for d in plan.rmdirs]
        replies = await self._request(ops, payloads, generation=generation)
        replies = replies[len(plan.mkdirs) :]
        written = []
        for path, reply in zip(puts, replies[: len(puts)], strict=True):
            self._note(path, reply, result)
            state, lst = local[path]
            if reply.get("ok") and state is not None:
                written.append((path, Entry.written(reply["stat"], state.mode, state.hash), lst))
        self.manifest.record(written)
        for path, reply in zip(plan.deletes, replies[len(puts) :], strict=False):
            self._note(path, reply, result)
        self.manifest.forget(plan.deletes)
        self._forget_dirs(plan.rmdirs, replies[len(puts) + len(plan.deletes) :])

    def _content(self, path: str, state: LocalFile, contents: dict[str, bytes]) -> bytes | None:
        """The bytes to send for `path`, only if they still have the planned hash."""
        data = contents.get(path)
        if data is not None:
            return data
        full = os.path.join(self.root, path)
        try:
            data = os.readlink(full).encode() if os.path.islink(full) else read_bytes(full)
        except OSError:
            return None
        digest = hash_bytes(b"link:" + data) if os.path.islink(full) else hash_bytes(data)
        return data if digest == state.hash else None
