"""What the agent must bring back after a crash: `wanted.json` (its forward owners, with
their forwards on a graceful stop, and its syncs), written as it changes and read at start."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sidecar.errors import OrchError
from sidecar.state import read_json, write_json

if TYPE_CHECKING:
    from sidecar.agent.server import Agent

log = logging.getLogger("orch.agent")
SPEC_FIELDS = ("local_port", "remote_host", "remote_port", "reverse")


def spec(forward: Any) -> list[Any]:
    """A forward spec as the JSON list `wanted.json` and `orch agent info` show."""
    return [forward.local_port, forward.remote_host, forward.remote_port, forward.reverse]


def save(agent: Agent, with_specs: bool = False) -> None:
    """Write what the agent runs (its forward owners and syncs) to `wanted.json`."""
    forwards = []
    for alias, owner in agent.forwards.items():
        entry: dict[str, Any] = {
            "alias": alias,
            "machine": owner.machine,
            "target": owner.target.model_dump_json(),
        }
        if with_specs:  # a graceful stop empties the owner's state file: keep them here
            entry["specs"] = [spec(s) for s in owner.forwards.specs()]
        forwards.append(entry)
    syncs = [{"project": r.project, "machine": r.machine} for r in agent.syncs.values()]
    write_json(agent.paths.wanted, {"syncs": syncs, "forwards": forwards})


async def restore(agent: Agent) -> None:
    """Bring back what a dead agent ran (its forwards first, then its syncs)."""
    raw = read_json(agent.paths.wanted)
    if not isinstance(raw, dict):
        return
    for entry in raw.get("forwards") or []:
        try:
            await _restore_forwards(agent, entry)
        except Exception:
            log.exception("could not bring back the forwards of %s", entry.get("alias"))
    for entry in raw.get("syncs") or []:
        try:
            await agent.sync_start(str(entry["project"]), str(entry["machine"]), wait=False)
        except Exception:
            log.exception("could not resume the sync of %s", entry.get("project"))
    save(agent)


async def _restore_forwards(agent: Agent, entry: dict[str, Any]) -> None:
    from remote_config.ssh_config import LocalForwardSpec
    from sidecar.machines.base import SSHTarget
    from sidecar.ssh.ports_service import dead_forwards

    target = SSHTarget.model_validate_json(entry["target"])
    specs = dead_forwards(agent.layout, target.alias)  # read before the new owner writes
    specs += [LocalForwardSpec(*s) for s in entry.get("specs") or [] if s]
    owner = await agent.host_forwards(str(entry["machine"]), target)
    if owner is None:
        return
    for forward in dict.fromkeys(specs):
        try:
            await owner.forwards.add(forward)
        except OrchError as exc:
            log.warning("forward %s not brought back: %s", forward, exc.message)
            detail = f"the forwarder died and it could not be restarted: {exc.message}"
            fields = dict(zip(SPEC_FIELDS, spec(forward), strict=True))
            owner.lost.append({**fields, "detail": detail})
    owner.write_state()
    log.info("brought back %d forward(s) to %s", len(owner.forwards.specs()), target.alias)
