"""The Orchestrator facade: every orch operation, once, for both front ends.

The `orch` CLI and the language server are thin adapters over this class, so they can never
disagree. It owns the project config, the machine providers and the connection pool; long-
lived things (the local machine's server) run in their own processes and are found through
their state files, so any number of Orchestrators can coexist without starting duplicates.

Its methods live by area in sidecar/facade/ (core, machines, status, ssh, sync, jobs, debug,
agent); `Orchestrator` composes them, and this module stays the one the faces import.
"""

from __future__ import annotations

from sidecar.facade.agent import AgentFacade
from sidecar.facade.debug import DebugFacade
from sidecar.facade.status import StatusFacade, config_problems

__all__ = ["Orchestrator", "config_problems"]


class Orchestrator(StatusFacade, DebugFacade, AgentFacade):
    """Every orch operation for one project folder (`cwd`): the areas of sidecar/facade/."""
