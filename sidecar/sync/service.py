"""The sync owner: one long-lived watcher per project and machine, and how others see it.

Exactly one process owns a project+machine sync (the orch agent, which runs every sync of
this user; with `ORCH_NO_AGENT=1` the background process `orch sync start` spawns; or
`orch sync start --foreground` in a terminal). It holds an flock on `owner.lock`
in `$ORCH_HOME/sync/<project>-<hash>/<machine>/` and publishes its state in `state.json`
(pid, state, last sync, generation, conflicts), which `orch sync status` and the language
server read. A dropped connection pauses the sync; it reconnects with bounded backoff and
then reconciles the whole tree, so every edit made meanwhile arrives. While idle it checks a
bounded page of the files it wrote there every `DRIFT_INTERVAL_S` (remote-only edits are
reported as drift and reconciled, not left until the next full sync).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from sidecar.errors import ConnectionFailed, OrchError
from sidecar.state import is_locked, pid_alive, read_json, secure_dir
from sidecar.sync.remote import HelperGone

if TYPE_CHECKING:
    from sidecar.context import MachineContext
    from sidecar.sync.engine import BatchResult, SyncEngine
    from sidecar.sync.watcher import Watcher

log = logging.getLogger("orch.sync")

SyncState = Literal["off", "idle", "syncing", "paused", "conflict", "failed"]
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
FAILED_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class SyncConflict(BaseModel):
    path: str
    remote_copy: str = Field(description="Where the remote's version was saved (beside it).")
    at: str


class SyncStatus(BaseModel):
    """`orch sync status` and the `sync` part of `orch/status` (docs/protocol.md)."""

    state: SyncState = "off"
    conflicts: list[SyncConflict] = Field(default_factory=list)
    last_sync: str | None = None
    generation: int = 0
    owner_pid: int | None = None
    owner: Literal["background", "foreground"] | None = None
    machine: str | None = None
    local_dir: str | None = None
    remote_dir: str | None = None
    watcher: str | None = None  # inotify | polling
    detail: str | None = None
    full_syncs: int = 0
    token: str | None = Field(
        default=None, description="The remote's name for the last generation written."
    )
    drift: list[str] = Field(
        default_factory=list,
        description="Remote files found changed behind orch's back at the last full sync "
        "(their remote versions were kept as conflict copies).",
    )
    failures: int = Field(default=0, description="Failed attempts since the last good sync.")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def state_dir(ctx: MachineContext) -> Path:
    cfg = ctx.config
    key = hashlib.sha256(cfg.local_dir.encode()).hexdigest()[:8]
    return ctx.layout.home / "sync" / f"{cfg.project_name}-{key}" / ctx.machine


def read_status(ctx: MachineContext) -> SyncStatus:
    """The published state; 'off' when no owner is alive (stale state is reported so)."""
    folder = state_dir(ctx)
    raw = read_json(folder / "state.json")
    status = SyncStatus.model_validate(raw) if isinstance(raw, dict) else SyncStatus()
    if (folder / CONFLICTS).exists():
        status.conflicts = load_conflicts(folder)
    if status.state == "idle" and status.conflicts:
        status.state = "conflict"
    elif status.state == "conflict" and not status.conflicts:
        status.state = "idle"
    status.machine = ctx.machine
    status.local_dir = ctx.config.local_dir
    status.remote_dir = ctx.config.remote_dir
    alive = (
        status.owner_pid is not None
        and pid_alive(status.owner_pid)
        and is_locked(folder / "owner.lock")
    )
    if not alive:
        if status.owner_pid is not None and status.state != "off":
            status.detail = (
                f"the sync process (pid {status.owner_pid}) ended unexpectedly"
                + (f" ({status.detail})" if status.detail else "")
                + "; start it again with `orch sync start` (its log: "
                + f"{folder / 'sync.log'})"
            )
            status.state = "failed"
        elif status.state != "failed":
            status.state = "off"
        status.owner_pid = None
        status.owner = None
    return status


DRIFT_INTERVAL_S = 10.0  # idle time between drift checks; $ORCH_SYNC_DRIFT_S overrides


def drift_interval() -> float:
    try:
        value = float(os.environ.get("ORCH_SYNC_DRIFT_S", DRIFT_INTERVAL_S))
    except ValueError:
        return DRIFT_INTERVAL_S
    return value if value > 0 else DRIFT_INTERVAL_S


class Owner:
    """Runs the sync for one project+machine until `stop` is set."""

    def __init__(
        self,
        ctx: MachineContext,
        *,
        foreground: bool,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.machine = ctx.machine
        self.folder = secure_dir(state_dir(ctx))
        previous = read_status(ctx)
        if previous.conflicts and not (self.folder / CONFLICTS).exists():
            update_conflicts(self.folder, add=previous.conflicts)  # state from an earlier orch
        self.status = SyncStatus(
            state="syncing",
            generation=previous.generation,
            owner_pid=os.getpid(),
            owner="foreground" if foreground else "background",
            machine=ctx.machine,
            local_dir=ctx.config.local_dir,
            remote_dir=ctx.config.remote_dir,
        )
        self.progress = progress
        self.stop = asyncio.Event()
        self.full_requested = asyncio.Event()
        self.dirty: set[str] = set()
        self.wakeup = asyncio.Event()
        self.engine: SyncEngine | None = None
        self.watcher: Watcher | None = None
        self._failure = ""  # the reason of the last failure, while retrying

    # -- published state ---------------------------------------------------------------------
    def publish(self, state: SyncState | None = None, detail: str | None = None) -> None:
        if state is not None:
            self.status.state = state
        # Conflicts live in their own file, which `orch sync resolve` edits under a lock:
        # this process never writes back a list the user has resolved since.
        self.status.conflicts = load_conflicts(self.folder)
        if self.status.state == "idle" and self.status.conflicts:
            self.status.state = "conflict"
        self.status.detail = detail
        _write_state(self.folder / "state.json", self.status.model_dump_json(indent=2))

    def _absorb(self, result: BatchResult) -> None:
        found = [
            SyncConflict(path=c.path, remote_copy=c.remote_copy, at=_iso(c.at) or "")
            for c in result.conflicts
        ]
        if found:
            update_conflicts(self.folder, add=found)
        if result.drift or self.status.drift:
            self.status.drift = result.drift if result.drift else self.status.drift
        for error in result.errors:
            log.warning("sync: %s", error)
        self.dirty |= result.retry
        if result.retry:
            self.wakeup.set()
        assert self.engine is not None
        self.status.generation = self.engine.manifest.generation
        self.status.token = self.engine.manifest.token()
        self.status.last_sync = _iso(time.time())
        if result.errors:  # some files could not be written there: not idle, retried
            shown = "; ".join(result.errors[:3]) + (" …" if len(result.errors) > 3 else "")
            raise SyncFailed(
                f"could not write {len(result.errors)} file(s) on the machine: {shown}",
                hint="check free space and permissions in the remote folder",
            )
        self.status.failures = 0

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, ready: Callable[[SyncStatus], None] | None = None) -> None:
        from sidecar.sync.engine import SyncEngine
        from sidecar.sync.manifest import Manifest
        from sidecar.sync.watcher import Watcher

        self.publish("syncing", "starting")
        target = await self.ctx.target()
        await self.ctx.write_ssh_config()
        manifest = Manifest(self.folder / "manifest.db")
        self.engine = SyncEngine(self.ctx.config, self.ctx.layout, self.ctx.pool, target, manifest)
        self.watcher = Watcher(
            self.engine.root,
            lambda: self.engine.rules if self.engine else None,  # type: ignore[arg-type,return-value]
            self._on_batch,
            self.ctx.config.config.sync.debounce_ms,
        )
        self.status.watcher = await asyncio.to_thread(self.watcher.start)
        ended, why = "off", "stopped"
        try:
            await self._guarded(self._full, initial=True)
            if ready is not None:
                ready(self.status)
            await self._loop()
        except Exception as exc:  # said in the status, not as a quiet "off"
            ended, why = "failed", getattr(exc, "message", None) or repr(exc)
            raise
        finally:
            self.watcher.stop()
            self.engine.disconnect()
            manifest.close()
            self.status.owner_pid = None
            self.status.owner = None
            self.status.watcher = None
            self.publish(ended, why)  # type: ignore[arg-type]

    async def run_once(self) -> SyncStatus:
        """One full sync without watching (`orch sync now` when no watcher runs)."""
        from sidecar.sync.engine import SyncEngine
        from sidecar.sync.manifest import Manifest

        self.status.owner = None
        self.publish("syncing", "one-off full sync")
        target = await self.ctx.target()
        await self.ctx.write_ssh_config()
        manifest = Manifest(self.folder / "manifest.db")
        self.engine = SyncEngine(self.ctx.config, self.ctx.layout, self.ctx.pool, target, manifest)
        try:
            result = await self.engine.full_sync(self.progress)
            self._absorb(result)
            self.status.full_syncs += 1
        finally:
            self.engine.disconnect()
            manifest.close()
            self.status.owner_pid = None
            self.publish("off", "one-off full sync done")
        return self.status

    def _on_batch(self, paths: set[str]) -> None:
        self.dirty |= paths
        self.wakeup.set()

    async def _loop(self) -> None:
        stopper = asyncio.create_task(self.stop.wait())
        try:
            while not self.stop.is_set():
                waker = asyncio.create_task(self.wakeup.wait())
                full = asyncio.create_task(self.full_requested.wait())
                done, _ = await asyncio.wait(
                    {stopper, waker, full},
                    timeout=drift_interval(),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waker.cancel()
                full.cancel()
                if self.stop.is_set():
                    return
                if not done:  # idle for a while: look for edits made only on the machine
                    await self._guarded(self._drift)
                    continue
                if self.full_requested.is_set():
                    self.full_requested.clear()
                    await self._guarded(self._full)
                elif self.dirty:
                    await self._guarded(self._batch)
                else:
                    self.wakeup.clear()
        finally:
            stopper.cancel()

    async def _batch(self) -> None:
        assert self.engine is not None
        self.wakeup.clear()
        batch, self.dirty = self.dirty, set()
        try:
            result = await self.engine.sync_paths(batch)
        except BaseException:
            self.dirty |= batch  # nothing is lost: the batch is retried after a reconnect
            raise
        self._absorb(result)
        self.publish("idle", detail=self.watcher.message if self.watcher else None)

    async def _drift(self) -> None:
        """One bounded drift check (`SyncEngine.check_drift`); drift found is reported and
        reconciled by a full sync (the machine's version is kept as a conflict copy)."""
        assert self.engine is not None
        found = await self.engine.check_drift()
        if found:
            log.warning("sync: changed on the machine behind orch's back: %s", found[:10])
            self.status.drift = sorted({*self.status.drift, *found})
            self.publish(detail=f"{len(found)} file(s) changed on the machine; reconciling")
            self.full_requested.set()

    async def _full(self, initial: bool = False) -> None:
        assert self.engine is not None
        self.wakeup.clear()
        pending, self.dirty = self.dirty, set()
        try:
            if self.status.failures:  # still failed until a sync succeeds: keep the reason
                self.publish("failed", f"{self._failure}; retrying now")
            else:
                self.publish("syncing", "initial sync" if initial else "full sync")
            result = await self.engine.full_sync(self.progress)
        except BaseException:
            self.dirty |= pending
            raise
        self._absorb(result)
        self.status.full_syncs += 1
        self.publish("idle", detail=self.watcher.message if self.watcher else None)

    async def _guarded(self, step: Callable[..., Any], initial: bool = False) -> None:
        """Run a sync step; on a dropped connection pause, reconnect, reconcile everything.

        Any other failure after the initial sync is published as `failed` with its reason and
        retried (a full reconcile of the tree as it is then) with growing back-off, so a
        running sync never ends by itself; the initial sync's failure is the caller's.
        """
        kwargs: dict[str, Any] = {"initial": True} if initial else {}
        while not self.stop.is_set():
            try:
                await step(**kwargs)
                return
            except (HelperGone, ConnectionFailed) as exc:
                log.warning("sync paused: %s", exc)
                await self._reconnect(str(exc))
            except Exception as exc:
                if initial:
                    raise
                self.status.failures += 1
                delay = FAILED_BACKOFF_S[min(self.status.failures, len(FAILED_BACKOFF_S)) - 1]
                reason = getattr(exc, "message", None) or repr(exc)
                self._failure = reason
                log.exception("sync failed (attempt %d)", self.status.failures)
                self.publish("failed", f"{reason}; retrying in {delay:g} s")
                await pause(self.stop, delay)
                if self.engine is not None:
                    self.engine.disconnect()
            step, kwargs = self._full, {}

    async def _reconnect(self, why: str) -> None:
        assert self.engine is not None
        self.publish("paused", f"connection lost ({why}); reconnecting")
        attempt = 0
        while not self.stop.is_set():
            self.engine.disconnect()
            self.ctx.pool.drop(self.engine.target.alias)
            try:
                await self.engine.connect()
                log.info("sync resumed")
                return
            except (HelperGone, ConnectionFailed, OSError) as exc:
                delay = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                attempt += 1
                self.publish("paused", f"reconnecting (attempt {attempt}): {exc}")
                await pause(self.stop, delay)

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self.full_requested.set)


async def pause(stop: asyncio.Event, delay: float) -> None:
    """Wait `delay` seconds or until `stop` is set. asyncio.timeout, not wait_for: on Python
    3.11 wait_for can swallow a cancellation that races the wait's end, and these waits sit
    in retry loops (a cancelled sync would go on)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await stop.wait()


def _write_state(path: Path, text: str) -> None:
    """Replace the state file atomically; no fsync: it is status, rewritten after each batch."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


CONFLICTS = "conflicts.json"


@contextlib.contextmanager
def _conflicts_lock(folder: Path) -> Any:
    import fcntl

    fd = os.open(folder / "conflicts.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load_conflicts(folder: Path) -> list[SyncConflict]:
    raw = read_json(folder / CONFLICTS)
    items = raw if isinstance(raw, list) else []
    return [SyncConflict.model_validate(c) for c in items if isinstance(c, dict)]


def update_conflicts(
    folder: Path, add: Sequence[SyncConflict] = (), drop: Sequence[str] | None = ()
) -> list[SyncConflict]:
    """Add conflicts, and forget those for `drop` (None: all), under the conflicts lock."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    with _conflicts_lock(folder):
        current = load_conflicts(folder)
        if drop is None:
            current = []
        elif drop:
            current = [c for c in current if c.path not in drop]
        current += list(add)
        _write_state(folder / CONFLICTS, json.dumps([c.model_dump() for c in current], indent=2))
    return current


def claim(folder: Path) -> int:
    """Take the owner lock (an fd held for the process's life) or raise Conflict."""
    import fcntl

    from sidecar.errors import Conflict

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "owner.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raw = read_json(folder / "state.json") or {}
        pid, owner = raw.get("owner_pid"), raw.get("owner") or "another process"
        raise Conflict(
            f"sync is already running for this project and machine ({owner}, pid {pid})",
            hint="see it with `orch sync status`; stop it with `orch sync stop`",
        ) from None
    return fd


def release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class SyncFailed(OrchError):
    pass
