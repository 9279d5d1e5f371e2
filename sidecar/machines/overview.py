"""Every machine of the project at a glance: each provider's status, read concurrently and
bounded in time, for the editor's machine picker (`orch.machine.list`).

A status must stay cheap: the local and ssh kinds read a state file or probe a port, cloud
kinds make one API call each. They run side by side, and one that fails or takes longer than
the timeout (a cloud API that does not answer, missing credentials) becomes an entry in
state "unknown" whose detail says why, so one broken machine never hides the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic import BaseModel, Field

from sidecar.errors import OrchError
from sidecar.machines.base import MachineInfo, Provider

STATUS_TIMEOUT_S = 8.0


class MachineList(BaseModel):
    """`orch.machine.list`: the project's machines (`local` always), by name."""

    default: str = Field(description="The project's default machine (orch.toml).")
    selected: str | None = Field(
        default=None, description="The machine the editor's commands act on (language server)."
    )
    machines: list[MachineInfo] = Field(default_factory=list)


async def _one(provider: Provider, timeout_s: float) -> MachineInfo:
    def unknown(detail: str) -> MachineInfo:
        return MachineInfo(name=provider.name, kind=provider.kind, state="unknown", detail=detail)

    try:
        info = await asyncio.wait_for(provider.status(), timeout_s)
    except TimeoutError:
        info = unknown(f"no answer within {timeout_s:.0f} s")
    except OrchError as exc:
        info = unknown(f"{exc.message} ({exc.hint})" if exc.hint else exc.message)
    info.capabilities = provider.capabilities
    return info


async def statuses(
    providers: Sequence[Provider], timeout_s: float = STATUS_TIMEOUT_S
) -> list[MachineInfo]:
    """The status of each provider, concurrently; failures and timeouts become "unknown"."""
    return list(await asyncio.gather(*(_one(p, timeout_s) for p in providers)))
