"""How a client of the local orch agent tells a wedged agent (one that keeps its socket open
but takes nothing, or whose process is stopped with SIGSTOP or Ctrl-Z) from a busy one, and
what it says then: its writes are bounded by `STALL_S`, and while it waits for an answer it
looks at the agent's process every `STALL_CHECK_S` (`Stall`). Standard library only, like
`sidecar.agent_client`, which uses it (and the bridge, through it).
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sidecar.agent_client import AgentPaths

# An agent that takes nothing a client writes for this long (its loop blocked, or stopped
# with SIGSTOP), or whose process stays stopped this long while a client waits for its
# answer, is given up on with a message saying so: never waited for forever.
STALL_S = float(os.environ.get("ORCH_AGENT_STALL_S", "10"))
STALL_CHECK_S = 1.0  # how often a client waiting for an answer looks at the agent's state


def _state(paths: AgentPaths) -> Any:
    try:
        return json.loads(paths.state.read_text())
    except (OSError, ValueError):
        return None


def wedged(paths: AgentPaths) -> str:
    """What to say of an agent that keeps its socket open but takes nothing."""
    raw = _state(paths)
    pid = raw.get("pid") if isinstance(raw, dict) else None
    return (
        f"the orch agent (pid {pid}) took nothing for {STALL_S:g} s: it is stopped "
        f"or wedged (resume it with `kill -CONT {pid}`, or end it with `kill {pid}`)"
    )


def stopped_pid(paths: AgentPaths) -> int | None:
    """The agent's pid when its process is stopped (SIGSTOP, Ctrl-Z: `T` in /proc)."""
    raw = _state(paths)
    pid = raw.get("pid") if isinstance(raw, dict) else None
    if not isinstance(pid, int):
        return None
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return None
    return pid if state in ("T", "t") else None


class Stall:
    """A client waiting for the agent's answer calls `check()` each `STALL_CHECK_S` of
    silence: once the agent's process has been stopped for `STALL_S`, the wait ends with
    AgentUnavailable (the request was sent: it may run when the agent resumes)."""

    def __init__(self, paths: AgentPaths) -> None:
        self.paths = paths
        self.since: float | None = None

    def check(self) -> None:
        pid = stopped_pid(self.paths)
        if pid is None:
            self.since = None
            return
        now = time.monotonic()
        self.since = self.since or now
        if now - self.since >= STALL_S:
            from sidecar.agent_client import AgentUnavailable  # (which imports this module)

            raise AgentUnavailable(
                f"the orch agent (pid {pid}) has been stopped for {STALL_S:g} s (SIGSTOP, "
                f"Ctrl-Z) with the request: it may run when it resumes (`kill -CONT {pid}`); "
                f"end it with `kill {pid}`"
            )
