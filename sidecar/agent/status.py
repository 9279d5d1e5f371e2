"""The agent's watched `orch status`: one per (project, machine) a client asked about.

Each is read with an Orchestrator for that project whose pool is the agent's own (one
connection per machine, shared with the syncs and forwards), rendered both as JSON and as the
text `orch status` prints (the CLI's own `print_status`, so the thin client's output is the
ordinary one by construction), re-read every second while a client asked within
`WATCH_FOR_S`, and answered from memory when under `MAX_AGE_S` old. `poke` (sent by the CLI
after any command) makes the next ask read anew.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar import __version__
from sidecar.errors import OrchError
from sidecar.layout import Layout
from sidecar.ssh.pool import ConnectionPool

if TYPE_CHECKING:
    from sidecar.app import Orchestrator

log = logging.getLogger("orch.agent")
MAX_AGE_S = 2.5  # a watched status older than this is read anew on request
WATCH_FOR_S = 300.0  # a project's status is watched this long after a client last asked


@dataclass
class Watched:
    asked: float
    read: float = 0.0
    reply: dict[str, Any] | None = None


def error_reply(exc: OrchError) -> dict[str, Any]:
    return {"kind": exc.kind, "message": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}


class StatusBoard:
    def __init__(self, layout: Layout, pool: ConnectionPool) -> None:
        self.layout = layout
        self.pool = pool
        self.orchs: dict[str, Orchestrator] = {}
        self.watched: dict[tuple[str, str | None], Watched] = {}

    def _orch(self, project: str) -> Orchestrator:
        from sidecar.app import Orchestrator

        if project not in self.orchs:
            orch = Orchestrator(cwd=Path(project), layout=self.layout)
            orch.pool = self.pool  # one connection per machine, shared with syncs and forwards
            self.orchs[project] = orch
        return self.orchs[project]

    async def read(self, project: str, machine: str | None) -> dict[str, Any]:
        """`orch status` as the CLI prints it (text and JSON), or its error."""
        from sidecar.cli.machine_cmds import print_status

        orch = self._orch(project)
        orch.forget_config()  # orch.toml may have changed: read it anew each time
        try:
            orch.provider(machine)
            status = await orch.status(machine)
        except OrchError as exc:
            return {"ok": False, **error_reply(exc)}
        text = io.StringIO()
        with contextlib.redirect_stdout(text):  # no await inside: nothing else prints here
            print_status(status)
        return {"ok": True, "status": status.model_dump(mode="json"), "text": text.getvalue()}

    async def status(self, project: str, machine: str | None, fresh: bool) -> dict[str, Any]:
        key = (project, machine)
        now = time.monotonic()
        entry = self.watched.setdefault(key, Watched(asked=now))
        entry.asked = now
        if fresh or entry.reply is None or now - entry.read > MAX_AGE_S:
            entry.reply = await self.read(project, machine)
            entry.read = time.monotonic()
        age = round(time.monotonic() - entry.read, 3)
        return {**entry.reply, "age_s": age, "version": __version__}

    def poke(self) -> None:
        """A client changed something: every watched status is read anew on next ask."""
        for entry in self.watched.values():
            entry.read = 0.0

    async def refresh(self) -> None:
        """Re-read every watched status; forget those nobody asked about lately."""
        now = time.monotonic()
        for key, entry in list(self.watched.items()):
            if now - entry.asked > WATCH_FOR_S:
                del self.watched[key]
                self.orchs.pop(key[0], None)
                continue
            try:
                entry.reply = await self.read(*key)
                entry.read = time.monotonic()
            except Exception:
                log.exception("status of %s failed", key[0])
