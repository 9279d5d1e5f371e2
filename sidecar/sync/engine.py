"""The sync engine: turns dirty paths (or the whole tree) into remote changes.

It owns the connection side of one project+machine sync: the helper process on the pooled
asyncssh connection, rsync through ControlMaster, the manifest, conflict records and the
sync generation. `sync_paths` handles a batch of paths the watcher saw change; `full_sync`
reconciles the whole tree (start-up, `orch sync now`, after a reconnect). A dropped
connection raises `HelperGone`; the caller (`service.py`) pauses and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from remote_config.loader import ResolvedConfig
from remote_config.sync import (
    Entry,
    IgnoreRules,
    LocalFile,
    Plan,
    choose_transport,
    conflict_suffix,
    gone_parents,
    is_ignore_file,
    plan_changes,
)
from sidecar.errors import OrchError
from sidecar.layout import Layout
from sidecar.machines.base import SSHTarget
from sidecar.ssh.pool import ConnectionPool
from sidecar.sync.manifest import LocalStat, Manifest
from sidecar.sync.remote import RemoteHelper, run_rsync
from sidecar.sync.scan import Scanner, hash_bytes, load_rules, local_stat

Progress = Callable[[int], None]
DIR_MARK = "<dir>"  # a folder in the pending (write-ahead) record


@dataclass
class Conflict:
    path: str
    remote_copy: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "remote_copy": self.remote_copy, "at": self.at}


@dataclass
class BatchResult:
    transport: str = "none"
    files: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    retry: set[str] = field(default_factory=set)  # changed while being sent: send again
    errors: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)  # remote files changed behind orch's back


class SyncEngine:
    def __init__(
        self,
        config: ResolvedConfig,
        layout: Layout,
        pool: ConnectionPool,
        target: SSHTarget,
        manifest: Manifest,
    ) -> None:
        self.config = config
        self.layout = layout
        self.pool = pool
        self.target = target
        self.manifest = manifest
        self.root = config.local_dir
        self.remote_dir = config.remote_dir
        self.rules: IgnoreRules = load_rules(self.root, config.config.sync)
        self.scanner = Scanner(self.root, self.rules)
        self.helper: RemoteHelper | None = None
        self._alt: dict[str, str] = {}  # path -> content a batch cut short may have left
        self._begin: str | None = None  # the token the next request marks as being applied
        self.drift: list[str] = []  # remote paths changed behind orch's back (last full sync)

    # -- connection --------------------------------------------------------------------------
    async def connect(self) -> None:
        conn = await self.pool.connection(self.target)
        self.helper = await RemoteHelper.start(conn)

    def disconnect(self) -> None:
        if self.helper is not None:
            self.helper.close()
            self.helper = None

    async def _request(
        self,
        ops: list[dict[str, Any]],
        payloads: list[bytes] | None = None,
        generation: int | None = None,
        hold: bool = False,
    ) -> list[dict[str, Any]]:
        if self.helper is None:
            await self.connect()
        assert self.helper is not None
        request = {
            "root": self.remote_dir,
            "ops": ops,
            "generation": None if generation is None else self.manifest.token(generation),
            "suffix": conflict_suffix(time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())),
            "hold": hold,
            "begin": self._begin,
        }
        self._begin = None
        return await self.helper.request(request, payloads)

    def reload_rules(self) -> None:
        self.rules = load_rules(self.root, self.config.config.sync)
        self.scanner = Scanner(self.root, self.rules)

    # -- batches -----------------------------------------------------------------------------
    async def sync_paths(self, dirty: Iterable[str]) -> BatchResult:
        """Make the remote match the local tree for `dirty` paths (files or folders)."""
        dirty = set(dirty)
        if any(is_ignore_file(p) for p in dirty):
            self.reload_rules()
            return await self.full_sync()
        local, contents, new_dirs, gone = self._expand(dirty)
        entries = self.manifest.entries(local)
        exists = {d: self.scanner.exists(d) for p in local for d in _parents(p)}
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
        files, dirs = await asyncio.to_thread(self.scanner.walk)
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
            result = await self._first_sync(files, dirs, progress)
            self.manifest.clear_pending()
            result.conflicts += early.conflicts
            return result
        cache = self.manifest.cached_hashes()
        local: dict[str, tuple[LocalFile | None, LocalStat | None]] = {}

        def hash_all() -> None:
            for path in files:
                found = self.scanner.state(path, cache)
                local[path] = (found[0], found[1]) if found else (None, None)

        await asyncio.to_thread(hash_all)
        drifted = await self._verify(entries, local)
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
        result = await self._apply(plan, local, stats, {}, entries, progress)
        result.drift = sorted(p for p in drifted if p not in self._alt)
        result.conflicts += early.conflicts
        self.manifest.clear_pending()
        self._alt = {}
        # Ignored paths orch wrote earlier stay on the remote but are no longer tracked.
        stale = [p for p in entries if self.rules.ignored_path(p)]
        if stale:
            self.manifest.forget(stale)
        return result

    async def _first_sync(
        self, files: list[str], dirs: list[str], progress: Progress | None
    ) -> BatchResult:
        """No manifest yet: copy everything with rsync; its checksums fill the manifest."""
        local: dict[str, tuple[LocalFile | None, LocalStat | None]] = {}
        for path in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(self.root, path))
                local[path] = (Scanner.file_of(st, ""), local_stat(st))
        plan = Plan(puts=sorted(local), mkdirs=dirs)
        result = BatchResult(transport="rsync", files=len(plan.puts))
        generation = self.manifest.generation + 1
        self._begin = self.manifest.token(generation)
        self.manifest.add_pending(dict.fromkeys(plan.puts))
        self.manifest.record_dirs(dirs, [])
        await self._precheck(plan.puts, {}, {}, result)
        sent = await self._rsync([*dirs, *plan.puts], progress)
        [reply] = await self._request([{"op": "stats", "paths": plan.puts}], generation=generation)
        stats = {p: st for p, st in zip(plan.puts, reply["stats"], strict=True) if st}
        self._record_rsync(plan.puts, local, sent, stats, result)
        self.manifest.set_generation(generation)
        return result

    async def _verify(
        self,
        entries: dict[str, Entry],
        local: dict[str, tuple[LocalFile | None, LocalStat | None]],
    ) -> set[str]:
        """Remote files that changed behind orch's back (drift), among those orch wrote.

        The remote compares size, mtime, inode and ctime with what orch recorded, and hashes
        the file when they differ; an unchanged file whose ctime moved (a snapshot's hard
        link, a chmod) gets its new stat recorded, so it is hashed once.
        """
        paths = [p for p in entries if p in local and local[p][0] is not None]
        ops: list[dict[str, Any]] = [{"op": "sweep"}]
        ops += [{"op": "verify", "path": p, "expect": entries[p].expect()} for p in paths]
        replies = (await self._request(ops))[1:]
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

    def _hash_many(self, paths: list[str]) -> dict[str, tuple[LocalFile, LocalStat]]:
        out = {}
        for path in paths:
            found = self.scanner.state(path, {})
            if found is not None:
                out[path] = (found[0], found[1])
        return out

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
        # Every folder the batch may create, the parents rsync and the helper make on their own
        # included: a folder orch made is removed there once it is gone here.
        made = {d for p in [*plan.puts, *(d for _, d in plan.moves)] for d in _parents(p)}
        folders = sorted({*plan.mkdirs, *made})
        self.manifest.record_dirs(folders, [])
        self.manifest.add_pending(dict.fromkeys(folders, DIR_MARK))  # made there? not sure yet
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
        self.manifest.clear_pending([*plan.puts, *(d for _, d in plan.moves), *folders])
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

    async def _rsync_batch(
        self,
        plan: Plan,
        local: dict[str, tuple[LocalFile | None, LocalStat | None]],
        stats: dict[str, LocalStat],
        entries: dict[str, Entry],
        generation: int,
        result: BatchResult,
        progress: Progress | None,
    ) -> None:
        hashes = {p: s.hash for p in plan.puts if (s := local[p][0]) is not None}
        await self._precheck(plan.puts, entries, hashes, result)
        sent = await self._rsync([*plan.mkdirs, *plan.puts], progress)
        # What rsync left there, stat'ed in the request that ends the batch: the manifest
        # must record the remote as it is, not the local file as it was planned (a file that
        # changed while rsync read it arrives with another size and mtime).
        ops: list[dict[str, Any]] = [{"op": "stat", "path": p} for p in plan.puts]
        ops += [
            {"op": "delete", "path": p, "expect": entries[p].expect(), "alt": self._alts(p)}
            for p in plan.deletes
        ]
        ops += [{"op": "rmdir", "path": d} for d in plan.rmdirs]
        replies = await self._request(ops, generation=generation)
        n = len(plan.puts)
        self._record_rsync(plan.puts, local, sent, _stats(plan.puts, replies[:n]), result)
        for path, reply in zip(plan.deletes, replies[n:], strict=False):
            self._note(path, reply, result)
        self.manifest.forget(plan.deletes)
        self._forget_dirs(plan.rmdirs, replies[n + len(plan.deletes) :])

    def _forget_dirs(self, rmdirs: list[str], replies: list[dict[str, Any]]) -> None:
        """Forget folders that are gone there; one still holding files (a job's outputs)
        stays known, so it is removed once it is empty."""
        gone = [d for d, r in zip(rmdirs, replies, strict=False) if r.get("gone", True)]
        self.manifest.record_dirs([], gone)

    async def _rsync(self, paths: list[str], progress: Progress | None) -> dict[str, str]:
        """rsync `paths` while the helper holds the remote sync lock (taken by _precheck)."""
        try:
            return await run_rsync(
                str(self.layout.ssh_config),
                self.target.alias,
                self.root,
                self.remote_dir,
                paths,
                progress,
            )
        except OrchError:
            with contextlib.suppress(OrchError):
                await self._request([], hold=False)
            raise

    async def _precheck(
        self,
        paths: list[str],
        entries: dict[str, Entry],
        hashes: dict[str, str],
        result: BatchResult,
    ) -> None:
        """Before rsync overwrites: move aside remote files changed since orch wrote them.

        Leaves the remote sync lock held (released by the request that ends the batch).
        """
        if not paths:
            await self._request([], hold=True)
            return
        ops = [
            {
                "op": "check",
                "path": p,
                "hash": hashes.get(p),
                "expect": entries[p].expect() if p in entries else None,
                "alt": self._alts(p),
            }
            for p in paths
        ]
        if not hashes:  # first sync: hashes come later; only probe what already exists
            [listing] = await self._request([{"op": "list"}], hold=True)
            there = set(listing["paths"])
            present = [p for p in paths if p in there]
            if not present:
                return
            found = await asyncio.to_thread(self._hash_many, present)
            ops = [
                {
                    "op": "check",
                    "path": p,
                    "expect": None,
                    "alt": self._alts(p),
                    "hash": found[p][0].hash if p in found else None,
                }
                for p in present
            ]
            paths = present
        replies = await self._request(ops, hold=True)
        for path, reply in zip(paths, replies, strict=True):
            self._note(path, reply, result)

    def _record_rsync(
        self,
        paths: list[str],
        local: dict[str, tuple[LocalFile | None, LocalStat | None]],
        sent: dict[str, str],
        remote: dict[str, list[int]],
        result: BatchResult,
    ) -> None:
        """Manifest rows for what rsync sent: its own checksum of the bytes it transferred,
        with the remote file's stat after the transfer.

        A file that changed while rsync ran is sent again (`retry`); its hash cache is not
        kept, so the next look reads it afresh.
        """
        rows = []
        for path in paths:
            state, before = local[path]
            full = os.path.join(self.root, path)
            try:
                now = local_stat(os.lstat(full))
                digest = sent.get(path)
                if digest is None and os.path.islink(full):
                    digest = hash_bytes(b"link:" + os.readlink(full).encode())
            except OSError:
                result.retry.add(path)
                continue
            there = remote.get(path)
            if state is None or digest is None or there is None:
                result.retry.add(path)
                continue
            stable = before == now
            entry = Entry.written(there, state.mode, digest)
            rows.append((path, entry, before if stable else None))
            if not stable:
                result.retry.add(path)
        self.manifest.record(rows)

    def _content(self, path: str, state: LocalFile, contents: dict[str, bytes]) -> bytes | None:
        """The bytes to send for `path`, only if they still have the planned hash."""
        data = contents.get(path)
        if data is not None:
            return data
        full = os.path.join(self.root, path)
        try:
            data = os.readlink(full).encode() if os.path.islink(full) else _read(full)
        except OSError:
            return None
        digest = hash_bytes(b"link:" + data) if os.path.islink(full) else hash_bytes(data)
        return data if digest == state.hash else None

    def _alts(self, path: str) -> list[str] | None:
        alt = self._alt.get(path)
        return [alt] if alt else None

    def _note(self, path: str, reply: dict[str, Any], result: BatchResult) -> None:
        if reply.get("conflict"):
            result.conflicts.append(Conflict(path, reply["conflict"], time.time()))
        if reply.get("error"):
            result.errors.append(str(reply["error"]))


def _stats(paths: list[str], replies: list[dict[str, Any]]) -> dict[str, list[int]]:
    return {p: r["stat"] for p, r in zip(paths, replies, strict=False) if r.get("stat")}


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
