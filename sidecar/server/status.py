"""`orch.status` and the `orch/status` notification.

The client never polls. Hosted in the orch agent (the default: `sidecar.agent.lsp_host`),
the server's watcher is the host's in-process subscription to the agent's status board
(`Host.status_watcher`). In the window's own process (`ORCH_LSP_HOSTED=0`) the server is a
client for status: it subscribes to the agent's watch of this project and machine
(`Orchestrator.status_events`) and forwards every pushed change as `orch/status`; the agent
reads the status over its one SSH connection per machine, shared with every other window and
`orch status`, so this process runs no status loop and opens no connection for it. If the
agent dies, the subscription ends and is opened again at once (which starts a new agent):
a push of the current status follows, and nothing waits on a dead socket (the agent sends a
heartbeat; a silent one is dropped after `Orchestrator.STATUS_SILENCE_S`).

With `ORCH_NO_AGENT=1` the server watches the status itself (`sidecar.watch.StatusWatch`
over its own Orchestrator), as before the agent.

`orch.status` answers from the latest status when it is under `MAX_AGE_S` old and no command
ran since (any command marks it stale, `OrchServer.changed`), so a client may ask as often as
it likes for about a millisecond; `{"fresh": true}` always reads anew.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sidecar.errors import OrchError
from sidecar.server.core import OrchServer, Params, Report
from sidecar.watch import MAX_AGE_S, StatusWatch, changed

log = logging.getLogger(__name__)

STATUS_NOTIFICATION = "orch/status"
RETRY_S = (0.1, 0.3, 1.0, 2.0)  # between attempts to (re)subscribe to the agent
STOP_WAIT_S = 2.0  # a shutdown waits at most this long for the subscription to end


class StatusParams(Params):
    fresh: bool = False  # read anew instead of answering from a read under MAX_AGE_S old


class AgentStatusFeed:
    """The agent's pushes of this window's status, forwarded as `orch/status`."""

    def __init__(self, server: OrchServer) -> None:
        self.server = server
        self.last: dict[str, Any] | None = None  # what was last sent to the client
        self._latest: tuple[float, dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.stopped = False
        self._stale = False
        self._machine: str | None = None  # the machine subscribed to

    def start(self) -> None:
        if self._task is None:
            self._machine = self.server.options.machine
            self._task = asyncio.create_task(self._run(self._machine), name="orch-status-feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self.stopped = True  # also ends a loop that missed its cancellation
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_WAIT_S)

    def poke(self) -> None:
        """A command ran: the agent reads anew (and pushes); `current` asks it afresh."""
        self._latest = None
        self._stale = True  # the next `current` asks the agent for a fresh read
        task = asyncio.ensure_future(asyncio.to_thread(self.server.orch.poke_agent))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        if self._task is not None and self.server.options.machine != self._machine:
            # `orch.machine.select` switched the window's machine: follow that one instead.
            self._task.cancel()
            self._task = None
            self.start()

    def _take(self, payload: dict[str, Any]) -> None:
        self._latest = (time.monotonic(), payload)
        if changed(self.last, payload):
            self.last = payload
            self.server.protocol.notify(STATUS_NOTIFICATION, payload)

    async def current(self, fresh: bool = False) -> dict[str, Any]:
        latest = self._latest
        if not fresh and latest is not None and time.monotonic() - latest[0] < MAX_AGE_S:
            return latest[1]
        machine = self.server.options.machine
        fresh, self._stale = fresh or self._stale, False
        try:
            payload = await self.server.orch.agent_status(machine, fresh=fresh)
        except OrchError as exc:
            if self.last is not None:
                return self.last  # the agent is being restarted: what it last said
            # No agent could be reached at all: read it here rather than answer nothing.
            log.warning("status without the orch agent: %s", exc.message)
            payload = (await self.server.orch.status(machine)).model_dump(mode="json")
        self._take(payload)
        return payload

    async def _run(self, machine: str | None) -> None:
        attempt = 0
        while not self.stopped and machine == self._machine:
            try:
                async for payload in self.server.orch.status_events(machine):
                    if self.stopped or machine != self._machine:
                        return
                    self.subscribed.set()
                    attempt = 0
                    self._take(payload)
                log.info("the orch agent ended the status subscription; subscribing again")
            except OrchError as exc:
                log.warning("status from the orch agent: %s", exc.message)
            except Exception:
                log.exception("status from the orch agent failed")
            self.subscribed.clear()
            await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
            attempt += 1


class LocalStatusWatch:
    """Without the agent: this process reads and watches the status itself."""

    def __init__(self, server: OrchServer) -> None:
        self.server = server
        self.watch = StatusWatch(self._read, name="lsp")
        self.watch.listeners.append(lambda p: server.protocol.notify(STATUS_NOTIFICATION, p))

    async def _read(self) -> dict[str, Any]:
        status = await self.server.orch.status(self.server.options.machine)
        return status.model_dump(mode="json")

    def start(self) -> None:
        self.watch.start()

    async def stop(self) -> None:
        await self.watch.stop()

    def poke(self) -> None:
        self.watch.poke()

    async def current(self, fresh: bool = False) -> dict[str, Any]:
        return await self.watch.current(fresh)


StatusWatcher = AgentStatusFeed | LocalStatusWatch


def watcher_for(server: OrchServer) -> Any:
    """Hosted in the agent: its in-process subscription (`Host.status_watcher`); else the
    agent's feed, or (`ORCH_NO_AGENT=1`) a watch of this process's own."""
    if server.host is not None:
        return server.host.status_watcher(server)
    return AgentStatusFeed(server) if server.orch.agent_enabled() else LocalStatusWatch(server)


class LazyWatcher:
    """Picks the watcher once the project is open (`initialized`), answers through it."""

    def __init__(self, server: OrchServer) -> None:
        self.server = server
        self.inner: Any = None  # a StatusWatcher, or the host's

    def _get(self) -> Any:
        if self.inner is None:
            self.inner = watcher_for(self.server)
        return self.inner

    def start(self) -> None:
        self._get().start()

    async def stop(self) -> None:
        if self.inner is not None:
            await self.inner.stop()

    def poke(self) -> None:
        if self.inner is not None:
            self.inner.poke()

    async def current(self, fresh: bool = False) -> dict[str, Any]:
        return await self._get().current(fresh)


def register(server: OrchServer, watcher: LazyWatcher) -> None:
    server.changed = watcher.poke

    @server.orch_command("orch.status", StatusParams, read_only=True)
    async def status(server: OrchServer, params: StatusParams, report: Report) -> dict[str, Any]:
        return await watcher.current(fresh=params.fresh)
