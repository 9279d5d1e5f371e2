"""The orch language server (pygls): the sidecar's front end for VS Code.

One module per area registers its `orch.<area>.<verb>` commands on an `OrchServer`; each is
a thin adapter over the Orchestrator facade (`sidecar/app.py`). The wire contract is
docs/protocol.md.
"""

from __future__ import annotations

import logging

from lsprotocol import types

from sidecar.server import (
    config_cmds,
    config_doc,
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
from sidecar.server.core import OrchServer

LOG_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}


def build_server() -> OrchServer:
    server = OrchServer()
    watcher = status.LazyWatcher(server)
    status.register(server, watcher)
    machine.register(server)
    ssh.register(server)
    ports.register(server)
    sync.register(server)
    followers = jobs.Followers(server)
    jobs.register(server, followers)
    debug.register(server)
    profile.register(server)
    idle.register(server)
    config_doc.register(server)
    config_cmds.register(server)

    @server.feature(types.INITIALIZE)
    def initialize(server: OrchServer, params: types.InitializeParams) -> None:
        server.open_project(params)
        level = LOG_LEVELS.get(server.options.logLevel, logging.DEBUG)
        logging.getLogger("sidecar").setLevel(level)
        if level == logging.DEBUG:
            logging.getLogger("pygls").setLevel(logging.DEBUG)

    @server.feature(types.INITIALIZED)
    def initialized(server: OrchServer, params: types.InitializedParams) -> None:
        watcher.start()
        server.check_config_file()

    @server.feature(types.SHUTDOWN)
    async def shutdown(server: OrchServer, params: None) -> None:
        await watcher.stop()
        await followers.close()
        await server.orch.close()

    return server
