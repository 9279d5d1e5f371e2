"""Starting, stopping and asking the sync owner (what the Orchestrator's sync methods do).

`start` either runs the owner in this process (`--foreground`), or hands it to the orch agent
(`sidecar.agent`: one process for every sync and forward, sharing one SSH connection per
machine), or with `ORCH_NO_AGENT=1` spawns the background process (`python -m
sidecar.sync.daemon`), which reports progress and readiness through a pipe; `stop` asks the
agent, or ends the owner by its PID; `now` asks a running owner for a full reconcile (the
agent by request, a sync process by SIGUSR1) or, with none running, does one here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sidecar import agent_client as client
from sidecar.daemon import terminate
from sidecar.errors import Conflict, OrchError
from sidecar.sync.service import Owner, SyncStatus, claim, read_status, release, state_dir

if TYPE_CHECKING:
    from sidecar.context import MachineContext

Progress = Callable[[int], None]
STOP_TIMEOUT_S = 10.0
START_TIMEOUT_S = 600.0


async def start(
    ctx: MachineContext,
    *,
    foreground: bool = False,
    progress: Progress | None = None,
    ready: Callable[[SyncStatus], None] | None = None,
) -> SyncStatus:
    current = read_status(ctx)
    if current.owner_pid is not None:
        raise Conflict(
            f"sync is already running for this project on {ctx.machine} "
            f"({current.owner}, pid {current.owner_pid})",
            hint="see it with `orch sync status`; stop it with `orch sync stop`",
        )
    # A machine that is not running is said here, as such (MachineNotRunning, with its
    # action), not as a failure of the background process to start.
    await ctx.target()
    if foreground:
        return await run_foreground(ctx, progress, ready)
    if client.enabled():
        paths, _ = await asyncio.to_thread(client.ensure, ctx.layout)
        request = {"op": "sync.start", "project": ctx.config.root, "machine": ctx.machine}
        try:
            await client.acall(
                paths, request, timeout=START_TIMEOUT_S, progress=progress, resend=True
            )
        except OrchError as exc:
            raise OrchError(
                f"sync failed to start: {exc.message}",
                hint=exc.hint or f"see {paths.log}",
                action="open.file",
                target=str(paths.log),
            ) from None
        return read_status(ctx)
    return await _spawn(ctx, progress)


def _agent_owned(ctx: MachineContext, pid: int) -> client.AgentPaths | None:
    """The agent's paths when the sync's owner is the orch agent (not a process of its own)."""
    paths = client.agent_paths(ctx.layout)
    return paths if client.agent_pid(paths) == pid else None


async def run_foreground(
    ctx: MachineContext,
    progress: Progress | None = None,
    ready: Callable[[SyncStatus], None] | None = None,
) -> SyncStatus:
    """Own the sync in this process until SIGINT/SIGTERM."""
    fd = claim(state_dir(ctx))
    try:
        owner = Owner(ctx, foreground=True, progress=progress)
        owner.install_signals()
        await owner.run(ready=ready)
        return owner.status
    finally:
        release(fd)


async def _spawn(ctx: MachineContext, progress: Progress | None) -> SyncStatus:
    argv = [
        sys.executable,
        "-m",
        "sidecar.sync.daemon",
        "--project",
        ctx.config.root,
        "--machine",
        ctx.machine,
        "--detach",
    ]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    last = ""
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while line := (await proc.stdout.readline()).decode().strip():
                last = line
                if line.startswith("progress ") and progress is not None:
                    progress(int(line.split()[1]))
                if line.startswith(("ok", "error")):
                    break
            await proc.wait()
    except TimeoutError:
        proc.kill()
        raise OrchError("the sync process did not finish its initial sync in time") from None
    if not last.startswith("ok"):
        err = b""
        if proc.stderr is not None:
            err = await proc.stderr.read()
        detail = last.removeprefix("error: ") or err.decode().strip()[-500:]
        log_file = state_dir(ctx) / "sync.log"
        raise OrchError(
            f"sync failed to start: {detail}",
            hint=f"see {log_file}",
            action="open.file",
            target=str(log_file),
        )
    return read_status(ctx)


async def stop(ctx: MachineContext) -> SyncStatus:
    status = read_status(ctx)
    pid = status.owner_pid
    if pid is None:
        status.detail = "sync was not running"
        return status
    agent = _agent_owned(ctx, pid)
    if agent is not None:
        request = {"op": "sync.stop", "project": ctx.config.root, "machine": ctx.machine}
        await client.acall(agent, request, timeout=STOP_TIMEOUT_S + 5, resend=True)
    else:
        await terminate(pid, STOP_TIMEOUT_S)
    status = read_status(ctx)
    status.detail = f"stopped (pid {pid})"
    return status


async def now(
    ctx: MachineContext, progress: Progress | None = None, timeout: float = 600
) -> SyncStatus:
    """A full reconcile: by the running owner if there is one, else here."""
    status = read_status(ctx)
    if status.owner_pid is None:
        fd = claim(state_dir(ctx))
        try:
            return await Owner(ctx, foreground=True, progress=progress).run_once()
        finally:
            release(fd)
    before = status.full_syncs
    agent = _agent_owned(ctx, status.owner_pid)
    if agent is not None:
        request = {"op": "sync.now", "project": ctx.config.root, "machine": ctx.machine}
        await client.acall(agent, request, resend=True)
    else:
        os.kill(status.owner_pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # the CLI waits on another process's state file
        await asyncio.sleep(0.05)
        status = read_status(ctx)
        if status.full_syncs > before or status.owner_pid is None:
            return status
    raise OrchError(
        "the running sync did not finish a full sync in time", hint="see `orch sync status`"
    )


def resolve(ctx: MachineContext, paths: list[str]) -> SyncStatus:
    """Forget recorded conflicts (all, or those for `paths`) once the user has dealt with them.

    The list lives in `conflicts.json`, edited under a lock by this and the running sync
    alike, so the running sync's next batch does not bring resolved conflicts back.
    """
    from sidecar.state import read_json, write_json
    from sidecar.sync.service import update_conflicts

    folder = state_dir(ctx)
    keep = update_conflicts(folder, drop=list(paths) if paths else None)
    raw = read_json(folder / "state.json")
    if isinstance(raw, dict):
        raw["conflicts"] = [c.model_dump() for c in keep]
        if raw.get("state") == "conflict" and not keep:
            raw["state"] = "idle"
        write_json(folder / "state.json", raw)
    return read_status(ctx)
