"""The sync engine's shared core: the results of a batch, and the connection side every path
of the engine uses (the helper process on the pooled connection, requests to it, the ignore
rules, conflict notes). `rsync_path.py` and `engine.py` build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from remote_config.loader import ResolvedConfig
from remote_config.sync import IgnoreRules, conflict_suffix
from sidecar.layout import Layout
from sidecar.machines.base import SSHTarget
from sidecar.ssh.pool import ConnectionPool
from sidecar.sync.manifest import Manifest
from sidecar.sync.remote import RemoteHelper
from sidecar.sync.scan import Scanner, load_rules

Progress = Callable[[int], None]
DIR_MARK = "<dir>"  # a folder in the pending (write-ahead) record
log = logging.getLogger("orch.sync")


class Phases:
    """Wall time per phase of the sync step in progress (seconds, summed per name): logged
    after each full sync and reported by `bench/sync_latency.py` (where the time goes)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - started

    def take(self) -> dict[str, float]:
        """The times so far, and start again."""
        times, self.times = self.times, {}
        return {k: round(v, 4) for k, v in times.items()}


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
    phases: dict[str, float] = field(default_factory=dict)  # full syncs: seconds per phase


class EngineBase:
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
        self.phase = Phases()
        with self.phase("ignore rules"):
            self.rules: IgnoreRules = load_rules(self.root, config.config.sync)
        self.scanner = Scanner(self.root, self.rules)
        self.helper: RemoteHelper | None = None
        self._alt: dict[str, str] = {}  # path -> content a batch cut short may have left
        self._begin: str | None = None  # the token the next request marks as being applied
        self._drift_after = ""  # where the next idle drift check goes on (a manifest path)
        self.kept_dirs: list[str] = []  # folders the last batch could not remove there
        self._connecting: asyncio.Task[None] | None = None  # see connect_soon

    def connect_soon(self) -> None:
        """Start connecting (and the helper) now, while local work goes on; the next request
        waits for it."""
        if self.helper is None and self._connecting is None:
            self._connecting = asyncio.create_task(self.connect())

    async def connect(self) -> None:
        with self.phase("connect"):
            conn = await self.pool.connection(self.target)
        with self.phase("helper start"):
            self.helper = await RemoteHelper.start(conn, self.manifest.sync_id)

    def disconnect(self) -> None:
        task, self._connecting = self._connecting, None
        if task is not None:
            task.cancel()
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: a failed early connect is no stray warning
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
        task, self._connecting = self._connecting, None
        if task is not None:
            await task
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

    def _forget_dirs(self, rmdirs: list[str], replies: list[dict[str, Any]]) -> None:
        """Forget folders that are gone there; one still holding files (a job's outputs)
        stays known, so it is removed once it is empty (those are in `kept_dirs`)."""
        gone = [d for d, r in zip(rmdirs, replies, strict=False) if r.get("gone", True)]
        self.kept_dirs += sorted(set(rmdirs) - set(gone))
        self.manifest.record_dirs([], gone)

    def _alts(self, path: str) -> list[str] | None:
        alt = self._alt.get(path)
        return [alt] if alt else None

    def _note(self, path: str, reply: dict[str, Any], result: BatchResult) -> None:
        if reply.get("conflict"):
            result.conflicts.append(Conflict(path, reply["conflict"], time.time()))
        if reply.get("error"):
            result.errors.append(str(reply["error"]))


def stats_by_path(paths: list[str], replies: list[dict[str, Any]]) -> dict[str, list[int]]:
    return {p: r["stat"] for p, r in zip(paths, replies, strict=False) if r.get("stat")}


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def parent_dirs(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
