"""The CLI's one switch between the orch agent and its own process.

Every command that needs a connection or a machine's state asks for it here: `call` runs one
method of the agent's allow-list (`Orchestrator.run_call`) in the local orch agent — over its
one SSH connection per machine, shared with the editor's windows, so the CLI never imports
asyncssh — or, with `ORCH_NO_AGENT=1` (or when the agent was started with other settings:
AWS_*, ORCH_*…, `agent_client.env_key`), on this process's Orchestrator, with the same checked
parameters. Either way the result comes back as the same result model (JSON from the agent
is validated into it), so a command prints the same text and `--json` on both paths. `logs`
streams a job's log the same two ways (the agent's `follow` stream, which goes on from the
last byte if the agent dies). Errors are the same OrchError classes either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sidecar.app import Orchestrator


async def call(
    orch: Orchestrator,
    method: str,
    model: Any,
    machine: str | None = None,
    progress: Callable[[str], None] | None = None,
    **params: Any,
) -> Any:
    """Run `method` (agent or here) and return its result as `model` (a type pydantic can
    validate: a result model, `list[str]`, `X | None`…)."""
    from pydantic import TypeAdapter

    result = await orch.run_call(method, machine, params, progress)
    return TypeAdapter(model).validate_python(result)  # (a model instance passes as it is)


def logs(
    orch: Orchestrator,
    name: str,
    tail: int | None,
    follow: bool,
    machine: str | None,
    on: str | None,
) -> AsyncIterator[str]:
    """A job's log as text chunks (`follow`: until the job ends)."""
    return orch.run_logs(name, tail, follow, machine, on)
