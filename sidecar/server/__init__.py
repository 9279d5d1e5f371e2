"""The orch language server (pygls): the sidecar's front end for VS Code.

One module per area registers its `orch.<area>.<verb>` commands on an `OrchServer`; each is
a thin adapter over the Orchestrator facade (`sidecar/app.py`). The wire contract is
docs/protocol.md.

Start-up order (issue 20: `initialize` answered in <= 400 ms): `initialize` is answered with
only pygls loaded; the command areas (pydantic parameter models), the facade and the status
watcher load at `initialized`, or at the first command if a client skips it. `COMMANDS` names
what `initialize` advertises before the areas are loaded; a unit test keeps it equal to what
the areas register.
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types

from sidecar.server import config_doc
from sidecar.server.core import Host, OrchServer

LOG_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}

COMMANDS = (
    "orch.status",
    *(f"orch.machine.{v}" for v in ("up", "down", "terminate", "terminatePlan", "status")),
    "orch.machine.list",
    "orch.machine.select",
    "orch.ssh.writeConfig",
    "orch.ports.list",
    "orch.ports.add",
    "orch.ports.remove",
    *(f"orch.sync.{verb}" for verb in ("start", "stop", "now", "status")),
    *(f"orch.jobs.{v}" for v in ("run", "status", "logs", "follow", "unfollow", "stop")),
    "orch.jobs.restart",
    "orch.jobs.rm",
    "orch.debug.attachConfig",
    "orch.debug.start",
    "orch.profile.run",
    "orch.idle.status",
    "orch.idle.keep",
    "orch.config.init",
)


class _Areas:
    """The command areas, registered once on first need; `stop` ends their background work."""

    def __init__(self, server: OrchServer) -> None:
        self.server = server
        self.loaded = False
        self.watcher: Any = None
        self.followers: Any = None

    def load(self) -> None:
        if self.loaded:
            return
        self.loaded = True
        from sidecar.server import (
            config_cmds,
            debug,
            idle,
            jobs,
            machine,
            ports,
            profile,
            ssh,
            status,
            sync,
        )

        server = self.server
        self.watcher = status.LazyWatcher(server)
        status.register(server, self.watcher)
        machine.register(server)
        ssh.register(server)
        ports.register(server)
        sync.register(server)
        self.followers = jobs.Followers(server)
        jobs.register(server, self.followers)
        debug.register(server)
        profile.register(server)
        idle.register(server)
        config_cmds.register(server)

    async def stop(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
        if self.followers is not None:
            await self.followers.close()


def build_server(host: Host | None = None) -> OrchServer:
    """The language server: the process's own, or (`host`) one hosted in the orch agent."""
    server = OrchServer(host)
    config_doc.register(server)  # its textDocument features are advertised at `initialize`
    server.advertise(COMMANDS)
    areas = _Areas(server)
    server.load_commands = areas.load
    server.stop_areas = areas.stop

    @server.feature(types.INITIALIZE)
    def initialize(server: OrchServer, params: types.InitializeParams) -> None:
        server.open_project(params)
        level = LOG_LEVELS.get(server.options.logLevel, logging.DEBUG)
        if server.host is not None:  # one window of many: its own level, not the process's
            server.host.set_level(level)
            return
        logging.getLogger("sidecar").setLevel(level)
        if level == logging.DEBUG:
            logging.getLogger("pygls").setLevel(logging.DEBUG)

    @server.feature(types.INITIALIZED)
    def initialized(server: OrchServer, params: types.InitializedParams) -> None:
        areas.load()
        areas.watcher.start()
        server.check_config_file()

    @server.feature(types.SHUTDOWN)
    async def shutdown(server: OrchServer, params: None) -> None:
        await areas.stop()
        if server.has_orch:
            await server.orch.close()

    return server
