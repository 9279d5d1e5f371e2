"""The rsync path of the sync engine: batches too large for the helper, and the manifest rows
recorded from rsync's own checksums and the remote's stats (the first copy of a tree builds on
it in `first_copy.py`).

The remote sync lock is taken by the precheck (which moves aside remote files changed since
orch wrote them) and held while rsync runs; the request that ends the batch releases it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from stat import S_ISLNK
from typing import Any

from remote_config.sync import Entry, LocalFile, Plan
from sidecar.errors import OrchError
from sidecar.sync.engine_base import BatchResult, EngineBase, Progress, stats_by_path
from sidecar.sync.manifest import LocalStat
from sidecar.sync.remote import run_rsync
from sidecar.sync.scan import hash_bytes, local_stat


class RsyncPath(EngineBase):
    def _restat(self, paths: list[str]) -> dict[str, tuple[LocalStat, str | None] | None]:
        """Each file's stat after rsync ran (None: gone), with a symlink's hash."""
        out: dict[str, tuple[LocalStat, str | None] | None] = {}
        for path in paths:
            full = os.path.join(self.root, path)
            try:
                st = os.lstat(full)
                link = None
                if S_ISLNK(st.st_mode):
                    link = hash_bytes(b"link:" + os.readlink(full).encode())
                out[path] = (local_stat(st), link)
            except OSError:
                out[path] = None
        return out

    def _hash_many(self, paths: list[str]) -> dict[str, tuple[LocalFile, LocalStat]]:
        out = {}
        for path in paths:
            found = self.scanner.state(path, {})
            if found is not None:
                out[path] = (found[0], found[1])
        return out

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
        self._record_rsync(plan.puts, local, sent, stats_by_path(plan.puts, replies[:n]), result)
        for path, reply in zip(plan.deletes, replies[n:], strict=False):
            self._note(path, reply, result)
        self.manifest.forget(plan.deletes)
        self._forget_dirs(plan.rmdirs, replies[n + len(plan.deletes) :])

    async def _rsync(
        self,
        paths: list[str],
        progress: Progress | None,
        on_sent: Callable[[list[tuple[str, str]]], None] | None = None,
        excludes: list[str] | None = None,
        on_dirs: Callable[[list[str]], None] | None = None,
    ) -> dict[str, str]:
        """rsync `paths` (with `excludes`: the tree less those rules) while the helper holds
        the remote sync lock (taken by _precheck)."""
        try:
            return await run_rsync(
                str(self.layout.ssh_config),
                self.target.alias,
                self.root,
                self.remote_dir,
                paths,
                progress,
                on_sent,
                excludes=excludes,
                on_dirs=on_dirs,
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
        rows: list[tuple[str, Entry, LocalStat | None]] = []
        after = self._restat(paths)
        for path in paths:
            state, before = local[path]
            found = after.get(path)
            there = remote.get(path)
            if found is None:
                # Gone here since rsync sent it: recorded with what rsync wrote there, so the
                # next batch removes it (the record of the batch is cleared when it ends).
                if state is not None and there is not None and path in sent:
                    rows.append((path, Entry.written(there, state.mode, sent[path]), None))
                result.retry.add(path)
                continue
            digest = sent.get(path) or found[1]
            if state is None or digest is None or there is None:
                result.retry.add(path)
                continue
            stable = before == found[0]
            entry = Entry.written(there, state.mode, digest)
            rows.append((path, entry, before if stable else None))
            if not stable:
                result.retry.add(path)
        self.manifest.record(rows)
