"""The agent's watched `orch status`: one `StatusWatch` per (project, machine) a client asked
about or subscribed to.

Each is read with an Orchestrator for that project whose pool is the agent's own (one
connection per machine, shared with the syncs, the forwards and every client), rendered both
as JSON and as the text `orch status` prints (the CLI's own `print_status`, so the thin
client's output is the ordinary one by construction). Its changes are pushed to every
subscriber (the language servers of the VS Code windows on that project); `poke` (sent by
the CLI and the language server after any command) makes every watch read anew at once. A
watch with no subscriber ends `WATCH_FOR_S` after a client last asked.

orch.toml is read anew when its modification time changes (not on every read: each reload
would leave the job backend's persistent remote shell behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar import __version__
from sidecar.agent_client import env_key
from sidecar.errors import ConfigFileError, OrchError
from sidecar.layout import Layout
from sidecar.ssh.pool import ConnectionPool
from sidecar.watch import StatusWatch

if TYPE_CHECKING:
    from sidecar.app import Orchestrator

log = logging.getLogger("orch.agent")
WATCH_FOR_S = 300.0  # a project's status is watched this long after a client last asked
HEARTBEAT_S = 5.0  # a subscriber hears from the agent at least this often
MAX_AGE_S = 2.5  # a watched status older than this is read anew on request

Key = tuple[str, str | None]
Listener = Callable[[dict[str, Any]], None]


@dataclass
class Watched:
    project: str
    machine: str | None
    asked: float
    watch: StatusWatch = field(init=False)
    subscribers: int = 0
    text: str = ""
    stderr: str = ""  # what `orch status` prints on stderr (an over-budget warning)
    error: dict[str, Any] | None = None  # the CLI's error (an unknown machine…), if any


def error_reply(exc: OrchError) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "kind": exc.kind,
        "message": exc.message,
        "hint": exc.hint,
        "exit_code": exc.exit_code,
        "action": exc.action,
        "target": exc.target,
    }
    if isinstance(exc, ConfigFileError):  # each problem with its line, for an editor
        reply["problems"] = [
            dataclasses.asdict(p)
            for p in exc.problems
            if dataclasses.is_dataclass(p) and not isinstance(p, type)
        ]
    return reply


ENV_KEY = env_key()  # the agent's environment, as it was started


def env_differs(request: dict[str, Any]) -> dict[str, Any] | None:
    """The reply to a request whose client runs with another environment (`env` sent and
    not the agent's: a CLI's `status`, `call` or `follow`): it is not answered; the client
    answers it itself. A language server's requests carry no `env`."""
    sent = request.get("env")
    if sent is None or sent == ENV_KEY:
        return None
    return {
        "ok": False,
        "env_differs": True,
        "message": "the orch agent runs with other settings (AWS_*, ORCH_*, …) than this client",
    }


class StatusBoard:
    def __init__(self, layout: Layout, pool: ConnectionPool) -> None:
        self.layout = layout
        self.pool = pool
        self.orchs: dict[str, Orchestrator] = {}
        self._stamps: dict[str, float | None] = {}
        self.watched: dict[Key, Watched] = {}
        self.subscribers: set[asyncio.StreamWriter] = set()

    def orch(self, project: str) -> Orchestrator:
        """The project's Orchestrator on the agent's pool (config re-read when it changed)."""
        from sidecar.app import Orchestrator

        orch = self.orchs.get(project)
        if orch is None:
            orch = Orchestrator(cwd=Path(project), layout=self.layout)
            orch.pool = self.pool  # one connection per machine, shared with syncs and forwards
            self.orchs[project] = orch
        stamp: float | None
        try:
            path = orch.config.path  # None: on defaults, until an orch.toml appears
            new_file = (orch.cwd / "orch.toml").exists()
            stamp = Path(path).stat().st_mtime if path else -float(new_file)
        except (ConfigFileError, OSError):
            stamp = None  # no valid config: nothing cached to keep
        if stamp is None or self._stamps.get(project) != stamp:
            orch.forget_config()  # orch.toml changed: read it anew
            self._stamps[project] = stamp
        return orch

    def entry(self, project: str, machine: str | None) -> Watched:
        key = (project, machine)
        entry = self.watched.get(key)
        if entry is None:
            entry = self.watched[key] = Watched(project, machine, time.monotonic())
            name = f"{Path(project).name}@{machine or 'default'}"
            entry.watch = StatusWatch(lambda: self._read(entry), name=name)
            entry.watch.start()
        return entry

    async def _read(self, entry: Watched) -> dict[str, Any]:
        """`orch status` as the CLI prints it (text and JSON), and the CLI's error, if any."""
        from sidecar.cli.machine_cmds import print_status

        orch = self.orch(entry.project)
        try:
            orch.provider(entry.machine)
            entry.error = None
        except OrchError as exc:
            entry.error = error_reply(exc)
        status = await orch.status(entry.machine)
        text, warnings = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(warnings):
            print_status(status)  # (no await inside: nothing else prints meanwhile)
        entry.text, entry.stderr = text.getvalue(), warnings.getvalue()
        return status.model_dump(mode="json")

    async def status(
        self, project: str, machine: str | None, fresh: bool, lenient: bool = False
    ) -> dict[str, Any]:
        """The watched status (read anew when older than MAX_AGE_S, or `fresh`); `lenient`:
        a status also for an unknown machine (the language server's), not the CLI's error."""
        entry = self.entry(project, machine)
        entry.asked = time.monotonic()
        payload = await entry.watch.current(fresh, max_age=MAX_AGE_S)
        if entry.error is not None and not lenient:
            return {"ok": False, **entry.error}
        reply = {"ok": True, "status": payload, "text": entry.text, "version": __version__}
        return reply | ({"stderr": entry.stderr} if entry.stderr else {})

    def subscribe(
        self, project: str, machine: str | None, listener: Listener
    ) -> Callable[[], None]:
        """Push every change of this status to `listener` (the current one first); returns
        the unsubscribe function."""
        entry = self.entry(project, machine)
        entry.subscribers += 1
        entry.watch.listeners.append(listener)
        if entry.watch.last is not None:
            listener(entry.watch.last)
        else:
            entry.watch.poke()

        def unsubscribe() -> None:
            entry.subscribers -= 1
            entry.asked = time.monotonic()
            with contextlib.suppress(ValueError):
                entry.watch.listeners.remove(listener)

        return unsubscribe

    def poke(self) -> None:
        """A client changed something: every watch reads anew now."""
        for entry in self.watched.values():
            entry.watch.poke()

    async def expire(self) -> None:
        """End the watches nobody subscribes to and nobody asked about lately."""
        now = time.monotonic()
        for key, entry in list(self.watched.items()):
            if entry.subscribers == 0 and now - entry.asked > WATCH_FOR_S:
                del self.watched[key]
                await entry.watch.stop()
                if not any(k[0] == key[0] for k in self.watched):
                    self.orchs.pop(key[0], None)

    async def serve_subscription(
        self,
        request: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        send: Callable[[dict[str, Any]], None],
    ) -> None:
        """A client's `subscribe` stream: the current status, every change, a heartbeat
        every `HEARTBEAT_S`; held until the client hangs up (or the agent stops)."""
        self.subscribers.add(writer)
        unsubscribe = self.subscribe(
            str(request["cwd"]),
            request.get("machine"),
            lambda status: send({"event": "status", "status": status}),
        )
        try:
            while not reader.at_eof():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HEARTBEAT_S):
                        await reader.read(4096)
                send({"event": "alive"})
        except (OSError, ValueError):
            pass  # the client went away
        finally:
            unsubscribe()
            self.subscribers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def close(self) -> None:
        for writer in list(self.subscribers):  # they subscribe again (to a successor)
            writer.close()
        for entry in list(self.watched.values()):
            await entry.watch.stop()
        self.watched.clear()
