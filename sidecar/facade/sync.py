"""The facade's sync: keep the project folder and the machine's copy in step.

Start and stop the watcher (a background process, or this one in the foreground), its
status, a full reconcile now, forgetting recorded conflicts, and the hard-linked snapshot
of the synced tree that jobs start from. sidecar/sync/ does the work.
"""

from __future__ import annotations

from collections.abc import Callable

from sidecar.facade.core import FacadeCore
from sidecar.results import SyncStatus


class SyncFacade(FacadeCore):
    async def sync_start(
        self,
        foreground: bool = False,
        machine: str | None = None,
        progress: Callable[[int], None] | None = None,
        ready: Callable[[SyncStatus], None] | None = None,
    ) -> SyncStatus:
        """Start watching and syncing (the background process, or this one if `foreground`,
        calling `ready` once the initial sync is done and it watches)."""
        from sidecar.sync import control

        return await control.start(
            self.context(machine), foreground=foreground, progress=progress, ready=ready
        )

    async def sync_stop(self, machine: str | None = None) -> SyncStatus:
        from sidecar.sync import control

        return await control.stop(self.context(machine))

    async def sync_status(self, machine: str | None = None) -> SyncStatus:
        from sidecar.sync.service import read_status

        return read_status(self.context(machine))

    async def sync_now(
        self, machine: str | None = None, progress: Callable[[int], None] | None = None
    ) -> SyncStatus:
        """A full reconcile now (by the running watcher, or here when none runs)."""
        from sidecar.sync import control

        return await control.now(self.context(machine), progress)

    async def sync_resolve(self, paths: list[str], machine: str | None = None) -> SyncStatus:
        """Forget recorded conflicts (all when `paths` is empty)."""
        from sidecar.sync import control

        return control.resolve(self.context(machine), paths)

    async def prepare_snapshot(self, machine: str | None = None) -> tuple[str, int]:
        """(remote path, generation) of a hard-linked snapshot of the synced tree."""
        from sidecar.sync.snapshot import prepare_snapshot

        return await prepare_snapshot(self.context(machine))
