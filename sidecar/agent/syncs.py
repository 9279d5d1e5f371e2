"""The agent's syncs (`sidecar.agent.server.Agent` is a `SyncHost`): `sync.start` runs a
project's sync loop (`sync.service.Owner`) in the agent's event loop over its one
connection pool, under the sync's own claim (so a second one, in the agent or not, is
refused); `sync.stop` and `sync.now` act on it. Each run is kept in `Agent.syncs` and in
`wanted.json` (brought back after a crash; a stopping agent keeps it there)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.errors import Conflict

if TYPE_CHECKING:
    from sidecar.context import MachineContext
    from sidecar.layout import Layout
    from sidecar.ssh.pool import ConnectionPool
    from sidecar.sync.service import Owner

log = logging.getLogger("orch.agent")


@dataclass
class SyncRun:
    project: str
    machine: str
    owner: Owner
    task: asyncio.Task[None]
    progress: list[Any] = field(default_factory=list)  # the current request's progress sink


class SyncHost:
    """The sync half of the agent (what it needs of the agent is declared here)."""

    layout: Layout
    pool: ConnectionPool
    syncs: dict[str, SyncRun]
    stopping: bool

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        raise NotImplementedError

    def _save_wanted(self, with_specs: bool = False) -> None:
        raise NotImplementedError

    # -- syncs --------------------------------------------------------------------------------
    def _context(self, project: str, machine: str | None) -> MachineContext:
        from sidecar.config import load_project_config
        from sidecar.context import MachineContext
        from sidecar.errors import NotFound
        from sidecar.machines import registry

        config = load_project_config(Path(project))
        name = machine or config.config.project.default_machine
        try:
            _, spec = config.machine(name)
        except KeyError:
            raise NotFound(f"unknown machine {name!r}") from None
        provider = registry.create(name, spec, self.layout, config.project_name)
        return MachineContext(config, self.layout, self.pool, provider)

    async def sync_start(
        self, project: str, machine: str | None, *, wait: bool = True, progress: Any = None
    ) -> dict[str, Any]:
        from sidecar.sync.service import Owner, claim, release, state_dir

        ctx = self._context(project, machine)
        key = str(state_dir(ctx))
        if key in self.syncs:
            raise Conflict(
                f"sync is already running for this project on {ctx.machine} (agent)",
                hint="see it with `orch sync status`; stop it with `orch sync stop`",
            )
        fd = claim(state_dir(ctx))
        sink: list[Any] = [progress]
        owner = Owner(ctx, foreground=False, progress=lambda pct: sink[0] and sink[0](pct))
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_ready(_status: Any) -> None:
            if not ready.done():
                ready.set_result(None)

        async def run() -> None:
            try:
                await owner.run(ready=on_ready)
            except Exception as exc:
                log.exception("sync of %s ended", project)
                if not ready.done():
                    ready.set_exception(exc)
            finally:
                release(fd)
                if self.syncs.get(key) is not None and self.syncs[key].owner is owner:
                    del self.syncs[key]
                    if not self.stopping:
                        self._save_wanted()

        task = self._spawn(run(), f"orch-agent-sync-{ctx.machine}")
        self.syncs[key] = SyncRun(str(ctx.config.root), ctx.machine, owner, task, sink)
        self._save_wanted()
        if wait:
            try:
                await ready
            finally:
                sink[0] = None
        else:
            sink[0] = None
        return {"ok": True, "status": owner.status.model_dump(mode="json")}

    async def _find_sync(self, project: str, machine: str | None) -> tuple[str, SyncRun | None]:
        from sidecar.sync.service import state_dir

        key = str(state_dir(self._context(project, machine)))
        return key, self.syncs.get(key)

    async def sync_stop(self, project: str, machine: str | None) -> dict[str, Any]:
        _, run = await self._find_sync(project, machine)
        if run is None:
            return {"ok": True, "stopped": False}
        run.owner.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(run.task), 10.0)
        return {"ok": True, "stopped": True}

    async def sync_now(self, project: str, machine: str | None) -> dict[str, Any]:
        _, run = await self._find_sync(project, machine)
        if run is None:
            return {"ok": True, "requested": False}
        run.owner.full_requested.set()
        return {"ok": True, "requested": True}
