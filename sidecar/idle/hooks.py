"""Per-kind stop hooks: what the idle agent on a machine does when it decides to stop.

A hook turns (provider, its current info, stop_action) into the agent's `hook` config:
  {"kind": "signal", "pid": N, "match": TEXT}  SIGTERM process N (checked by its command
                                               line, so a reused pid is never hit), then exit
  {"kind": "command", "argv": [...]}           run a command on the machine (e.g. EC2's
                                               instance-initiated shutdown: `sudo shutdown -h
                                               now`, with the instance's shutdown behaviour
                                               set to stop or terminate from `stop_action`)
  {"kind": "report"}                           log "would stop" only
Built in: `local` (the embedded server shuts down) and `ssh` (report only: orch does not own
the host). Cloud kinds plug theirs in from their own module with `register_stop_hook(kind,
hook)`; a kind without a hook is report-only, and `orch status` says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sidecar.machines.base import MachineInfo, Provider

StopHook = Callable[[Provider, MachineInfo, str], dict[str, Any]]


def _local(provider: Provider, info: MachineInfo, stop_action: str) -> dict[str, Any]:
    if info.pid is None:
        return {"kind": "report", "note": "the local machine's server pid is unknown"}
    return {"kind": "signal", "pid": info.pid, "match": "sidecar.machines.local.server"}


def _report(provider: Provider, info: MachineInfo, stop_action: str) -> dict[str, Any]:
    return {"kind": "report", "note": f"{provider.kind} machines are only reported as idle"}


_HOOKS: dict[str, StopHook] = {"local": _local, "ssh": _report}


def register_stop_hook(kind: str, hook: StopHook) -> None:
    """Plug in the stop action of a machine kind (EC2 and Codespaces register theirs)."""
    _HOOKS[kind] = hook


def stop_hook(provider: Provider, info: MachineInfo, stop_action: str) -> dict[str, Any]:
    hook = _HOOKS.get(provider.kind)
    if hook is None:
        return {"kind": "report", "note": f"no idle stop action for {provider.kind} machines yet"}
    return hook(provider, info, stop_action)
