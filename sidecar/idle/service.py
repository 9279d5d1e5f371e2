"""The laptop side of idle stop: install and start the agent, read its state, keep running.

`ensure_agent` (called by `orch up`) is one round trip: it copies the agent's three files to
`~/.orch/idle/` when their version changed (stopping an older agent), writes `config.json`
(the policy from `policy.py`, the kind's stop hook from `hooks.py`, the sync marker) and runs
`orch_idle_agent.py start`, which starts the agent unless one already runs — so `orch up`
also restarts an agent that died. `read_status` reads the agent's `state.json` together with
the machine's clock; `keep` touches the marker that resets the idle timer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from remote_config.idle import format_duration, status_line
from remote_config.job_scripts import heredoc
from remote_config.job_sh import SOCKET
from sidecar.errors import RemoteCommandFailed
from sidecar.idle.hooks import stop_hook
from sidecar.idle.policy import policy_for
from sidecar.machines import registry
from sidecar.machines.base import MachineInfo

if TYPE_CHECKING:
    from sidecar.context import MachineContext

AGENT_DIR = ".orch/idle"  # relative to the remote home
# Probes to leave out ("cpu,gpu"): for tests on a shared computer, and for troubleshooting.
DISABLE_ENV = "ORCH_IDLE_DISABLE"
KEEP_MARKER = f"~/{AGENT_DIR}/keep"
ACTIVITY_MARKER = f"~/{AGENT_DIR}/activity"  # touched by orch's debug sessions
_ROOT = Path(__file__).resolve().parents[2]
_FILES = {
    "orch_idle_agent.py": _ROOT / "sidecar" / "idle" / "agent.py",
    "orch_idle_probe.py": _ROOT / "sidecar" / "idle" / "probe.py",
    "orch_idle_decide.py": _ROOT / "remote_config" / "idle.py",
}


class IdleStatus(BaseModel):
    """What the agent last decided (shown by `orch status` and in `orch/status`)."""

    action: str  # keep | warn | stop | stopped (report-only: stop means "would stop")
    line: str  # "idle 25 min · stops in 5 min"
    reason: str
    idle_s: float
    stops_in_s: float | None = None
    rule: str = ""
    stop_hook: str = "report"
    agent_pid: int | None = None
    checked_s_ago: float = 0.0
    stale: bool = False  # the agent has not checked for several intervals (is it alive?)


def agent_files() -> tuple[str, dict[str, str]]:
    """(version, file name -> text) of what is shipped to the machine."""
    texts = {name: path.read_text() for name, path in _FILES.items()}
    digest = hashlib.sha256("".join(texts[n] for n in sorted(texts)).encode()).hexdigest()
    return digest[:16], texts


def agent_config(ctx: MachineContext, info: MachineInfo) -> dict[str, Any] | None:
    """The agent's config.json for this machine, or None when every rule is off."""
    if not enabled(ctx):
        return None
    spec = ctx.provider.spec
    policy = policy_for(ctx.machine, spec, registry.capabilities(ctx.provider.kind))
    remote_dir = ctx.config.remote_dir
    started_at = time.time() - info.uptime_s if info.uptime_s is not None else None
    return {
        "machine": ctx.machine,
        "policy": {
            "idle_stop_s": policy.idle_stop_s,
            "warn_s": policy.warn_s,
            "ttl_s": policy.ttl_s,
            "ttl_hard": policy.ttl_hard,
            "interval_s": policy.interval_s,
        },
        "started_at": started_at,
        "stop_action": spec.stop_action,
        "hook": stop_hook(ctx.provider, info, spec.stop_action),
        # Record platform interruption notices each check (also with the laptop closed).
        "notice_check": ctx.provider.interruption_check(),
        "disable": [p for p in os.environ.get(DISABLE_ENV, "").split(",") if p],
        "markers": [
            [f"{remote_dir}/.orch/generation", "sync"],
            [KEEP_MARKER, "orch idle keep"],
            [ACTIVITY_MARKER, "debug session"],
        ],
    }


def ensure_script(version: str, files: dict[str, str], config: dict[str, Any]) -> str:
    """sh: install the agent if its version changed (stopping the old one), write its config,
    start it unless it runs. Prints the agent's 'started PID' or 'running PID'."""
    d = f'"$HOME"/{AGENT_DIR}'
    lines = [
        "set -e",
        f'D={d}; mkdir -p "$D"; chmod 700 "$HOME/.orch" "$D"',
        'if [ "$(cat "$D/version" 2>/dev/null)" != ' + shlex.quote(version) + " ]; then",
        '  if [ -f "$D/agent.pid" ]; then read -r P < "$D/agent.pid" || P=; '
        'if [ -n "$P" ] && grep -q orch_idle_agent "/proc/$P/cmdline" 2>/dev/null; then '
        'kill "$P" 2>/dev/null || :; i=0; while [ -d "/proc/$P" ] && [ $i -lt 30 ]; do '
        "sleep 0.1; i=$((i + 1)); done; fi; fi",
    ]
    for name in sorted(files):
        lines.append("  " + heredoc(f'"$D"/{name}.tmp', files[name]).rstrip("\n"))
        lines.append(f'  mv -f "$D"/{name}.tmp "$D"/{name}')
    lines += [
        f'  printf %s {shlex.quote(version)} > "$D/version"',
        "fi",
        heredoc('"$D"/config.json.tmp', json.dumps(config)).rstrip("\n"),
        'mv -f "$D/config.json.tmp" "$D/config.json"',
        f'{SOCKET}; printf %s "$S" > "$D/tmux_socket"',
        "command -v python3 >/dev/null 2>&1 || { echo 'python3 not found' >&2; exit 127; }",
        'exec python3 "$D/orch_idle_agent.py" start',
    ]
    return "\n".join(lines) + "\n"


async def ensure_agent(ctx: MachineContext, info: MachineInfo) -> str | None:
    """Install/start the idle agent on a running machine; 'started PID' / 'running PID', or
    None when idle stop and TTL are both off for this machine."""
    config = agent_config(ctx, info)
    started_here = ctx.provider.state_dir / "idle-agent"  # orch started an agent there
    if config is None:
        if started_here.exists():  # retire it: an agent exits once its config is gone
            d = f'"$HOME"/{AGENT_DIR}'
            await ctx.pool.run(await ctx.target(), f"rm -f {d}/config.json {d}/state.json")
            started_here.unlink()
        return None
    target = await ctx.target()
    version, files = agent_files()
    script = ensure_script(version, files, config)
    result = await ctx.pool.run(target, "sh -s", input=script, timeout=60)
    if result.exit_status != 0:
        raise RemoteCommandFailed(
            f"could not start the idle agent on {ctx.machine}: "
            f"{result.stderr.strip()[-300:] or f'exit status {result.exit_status}'}",
            hint="the agent needs python3 on the machine; see docs/idle.md",
            exit_status=result.exit_status,
            stderr=result.stderr,
        )
    started_here.parent.mkdir(parents=True, exist_ok=True)
    started_here.write_text(f"{ctx.machine}\n")
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else None


async def _read_state(ctx: MachineContext) -> tuple[float, dict[str, Any]] | None:
    """(the machine's clock, the agent's state.json), or None when there is no state."""
    text = await ctx.remote_text(f'date +%s; cat "$HOME"/{AGENT_DIR}/state.json 2>/dev/null')
    head, _, body = text.partition("\n")
    try:
        state = json.loads(body)
        return float(head.strip()), state
    except ValueError:
        return None


def enabled(ctx: MachineContext) -> bool:
    """Whether idle stop or a TTL is on for the machine (else no agent runs there)."""
    spec = ctx.provider.spec
    policy = policy_for(ctx.machine, spec, registry.capabilities(ctx.provider.kind))
    return policy.idle_stop_s is not None or policy.ttl_s is not None


async def read_status(ctx: MachineContext) -> IdleStatus | None:
    """The agent's latest decision, or None when the machine has no agent (no round trip
    when idle stop and TTL are off)."""
    if not enabled(ctx):
        return None
    found = await _read_state(ctx)
    return None if found is None else status_from_state(found[1], found[0])


def status_from_state(state: dict[str, Any], now: float) -> IdleStatus:
    """Pure: the status shown for the agent's state.json, as of the machine's clock `now`."""
    interval = float(state.get("interval_s") or 60)
    checked_ago = max(0.0, now - float(state.get("checked_at") or 0))
    idle_s = float(state.get("idle_s") or 0) + checked_ago
    stops_at = state.get("stops_at")
    hook = str(state.get("stop_hook") or "report")
    action = str(state.get("action") or "keep")
    stale = checked_ago > 3 * interval + 5
    if action == "keep" and str(state.get("reason", "")).startswith("active"):
        line = str(state["reason"])
    elif hook == "report":
        line = f"idle {format_duration(idle_s)}"
        if action == "stop":
            line += " · would stop now (report only)"
        elif stops_at is not None:
            line += f" · would stop in {format_duration(max(0.0, float(stops_at) - now))}"
    else:
        line = status_line(idle_s, None if stops_at is None else float(stops_at), now)
        if state.get("rule") == "ttl":
            line = str(state.get("reason"))
    if stale:
        line += f" (agent silent for {format_duration(checked_ago)})"
    return IdleStatus(
        action=action,
        line=line,
        reason=str(state.get("reason") or ""),
        idle_s=round(idle_s, 1),
        stops_in_s=None if stops_at is None else round(max(0.0, float(stops_at) - now), 1),
        rule=str(state.get("rule") or ""),
        stop_hook=hook,
        agent_pid=state.get("pid"),
        checked_s_ago=round(checked_ago, 1),
        stale=stale,
    )


async def touch_activity(ctx: MachineContext) -> None:
    """Mark activity that no probe sees by itself (a debug session starting or attaching)."""
    path = ACTIVITY_MARKER.removeprefix("~/")
    await ctx.pool.run(await ctx.target(), f'mkdir -p "$HOME"/{AGENT_DIR} && touch "$HOME"/{path}')


KEEP_SCRIPT = (
    f'D="$HOME"/{AGENT_DIR}; mkdir -p "$D" && touch "$D/keep" && date +%s && '
    # Wake the agent so that the status shows the reset at once, not after an interval.
    'P=$(cat "$D/agent.pid" 2>/dev/null) && grep -q orch_idle_agent "/proc/$P/cmdline" '
    '2>/dev/null && kill -USR1 "$P" 2>/dev/null || :'
)


async def keep(ctx: MachineContext, wait_s: float = 3.0) -> IdleStatus | None:
    """Reset the idle timer ("Keep running"): the agent counts the marker's time as activity.
    Returns the agent's state once it has checked again (or the last one after `wait_s`)."""
    import asyncio

    target = await ctx.target()
    result = await ctx.pool.run(target, KEEP_SCRIPT)
    if result.exit_status != 0:
        raise RemoteCommandFailed(
            f"could not reset the idle timer on {ctx.machine}: {result.stderr.strip()[-300:]}",
            exit_status=result.exit_status,
            stderr=result.stderr,
        )
    kept_at = float(result.stdout.split()[0])
    deadline = time.monotonic() + wait_s
    while True:
        found = await _read_state(ctx)
        if found is None:
            return None
        now, state = found
        if float(state.get("checked_at") or 0) >= kept_at or time.monotonic() > deadline:
            return status_from_state(state, now)
        await asyncio.sleep(0.1)
