"""`orch debug`: start a job under debugpy, forward a local port to it, and produce the VS Code
attach configuration (host, forwarded port, pathMappings from the local project folder to the
folder the job runs in on the machine — a snapshot or the synced folder).

Per debug job, `$ORCH_HOME/debug/<alias>/<job>.json` remembers the remote port, the local port
and the remote root, so `orch debug attach`, `orch debug config` and the extension resolve the
same values later, from any process.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from remote_config.debug import (
    USED_PORTS_COMMAND,
    debugpy_argv,
    expand_home,
    is_listening,
    listening_port,
)
from remote_config.launch_json import LaunchJsonError, attach_configuration, merge_configuration
from sidecar.debug.bootstrap import ensure_debugpy
from sidecar.errors import DebuggerNotReady, NotFound, OrchError, PortBusy, UsageError
from sidecar.state import atomic_write, read_json, write_json

if TYPE_CHECKING:
    from remote_config.jobs import JobInfo
    from sidecar.context import MachineContext
    from sidecar.jobs.backend import JobBackend
    from sidecar.machines.base import SSHTarget
    from sidecar.ssh.forwards import PortForwardInfo

# How long `orch debug` / `orch.debug.start` wait for debugpy to listen (it starts with the
# job: usually 0.5–3 s, more on a busy machine or a cold interpreter).
READY_TIMEOUT_S = 30.0
# `attach` finds a job that usually listens already; not listening may mean a client holds it.
ATTACH_TIMEOUT_S = 10.0


class DebugSession(BaseModel):
    name: str
    machine: str
    local_port: int
    remote_port: int
    remote_root: str
    configuration: dict[str, Any]


def _state_path(ctx: MachineContext, alias: str, name: str) -> Path:
    return ctx.layout.home / "debug" / alias / f"{name}.json"


def _free_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start(
    ctx: MachineContext,
    jobs: JobBackend,
    name: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    replace: bool = False,
    snapshot: bool | None = None,
    say: Callable[[str], None] | None = None,
) -> DebugSession:
    """Run `argv` as job `name` under debugpy (waiting for a client) and forward a port to it."""
    from sidecar.jobs.tmux import checked_name

    checked_name(name)
    python = ctx.config.config.debug.python
    target = await ctx.target()
    remote = await ensure_debugpy(ctx.pool, target, python, say=say)
    remote_port = remote.free_port
    try:
        command = debugpy_argv(list(argv), python, remote_port)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    job_env = dict(env or {})
    if remote.pythonpath:
        job_env["PYTHONPATH"] = remote.pythonpath
    workdir = await jobs.prepare_code(snapshot, name)
    remote_root = workdir or expand_home(ctx.config.remote_dir, remote.home)
    await jobs.run(name, command, job_env, replace=replace, workdir=workdir)
    session = await _forward(ctx, target.alias, name, remote_port, remote_root)
    if say:
        say(f"waiting for debugpy to listen on {ctx.machine}'s 127.0.0.1:{remote_port}")
    await wait_until_listening(ctx, jobs, target, name, remote_port)
    return session


async def wait_until_listening(
    ctx: MachineContext,
    jobs: JobBackend,
    target: SSHTarget,
    name: str,
    remote_port: int,
    timeout: float = READY_TIMEOUT_S,
    maybe_attached: bool = False,
) -> None:
    """Return once debugpy accepts connections on the machine, so a client attaching through
    the forward right away is not turned away (the forward closes a connection it cannot
    carry to the machine). Fails, saying why, if the job ends first or the deadline passes.

    Readiness is read from the machine's socket table, not by connecting: debugpy's adapter
    serves a single client, and a probe that connects and leaves can end the debug session.
    """
    deadline = time.monotonic() + timeout
    next_job_check = time.monotonic() + 1.0
    while True:
        listing = await ctx.pool.run(target, USED_PORTS_COMMAND)
        if is_listening(listing.stdout, remote_port):
            return
        now = time.monotonic()
        if now >= next_job_check or now >= deadline:
            next_job_check = now + 1.0
            await _fail_if_ended(jobs, name)
        if now >= deadline:
            why = " (is another debugger attached to it?)" if maybe_attached else ""
            raise DebuggerNotReady(
                f"debugpy does not accept connections for job {name!r} after {timeout:.0f} s" + why,
                hint=f"see what the job printed: orch logs {name}",
            )
        await asyncio.sleep(0.1)


async def _fail_if_ended(jobs: JobBackend, name: str) -> None:
    job = next((j for j in await jobs.status() if j.name == name), None)
    if job is None or job.state == "running":
        return
    tail = ""
    with contextlib.suppress(OrchError):
        tail = (await jobs.logs(name, tail=5)).strip()
    exit_code = f" with exit code {job.exit_code}" if job.exit_code is not None else ""
    raise DebuggerNotReady(
        f"job {name!r} {job.state}{exit_code} before debugpy listened"
        + (f"; its last lines:\n{tail}" if tail else ""),
        hint=f"see its log: orch logs {name}",
    )


async def _forward(
    ctx: MachineContext,
    alias: str,
    name: str,
    remote_port: int,
    remote_root: str,
    local_port: int | None = None,
) -> DebugSession:
    from remote_config.ssh_config import LocalForwardSpec
    from sidecar.ssh.ports_service import add_port

    for attempt in range(3):
        port = local_port or _free_local_port()
        try:
            spec = LocalForwardSpec(port, "127.0.0.1", remote_port)
            await add_port(ctx.layout, await ctx.target(), ctx.machine, spec)
            break
        except PortBusy:
            if local_port is not None or attempt == 2:
                raise  # a port the user relies on moved away: say so, never move silently
    state = {"remote_port": remote_port, "local_port": port, "remote_root": remote_root}
    write_json(_state_path(ctx, alias, name), state)
    return _session(ctx, name, state)


def _session(ctx: MachineContext, name: str, state: dict[str, Any]) -> DebugSession:
    cfg = ctx.config
    configuration = attach_configuration(
        f"attach {name}",
        int(state["local_port"]),
        cfg.local_dir,
        str(state["remote_root"]),
        just_my_code=cfg.config.debug.just_my_code,
    )
    return DebugSession(
        name=name,
        machine=ctx.machine,
        local_port=int(state["local_port"]),
        remote_port=int(state["remote_port"]),
        remote_root=str(state["remote_root"]),
        configuration=configuration,
    )


async def attach(ctx: MachineContext, jobs: JobBackend, name: str) -> DebugSession:
    """The session of a job started under debugpy; its port forward is restored if gone."""
    from sidecar.ssh.ports_service import list_ports

    target = await ctx.target()
    job = {j.name: j for j in await jobs.status()}.get(name)
    if job is None:
        raise NotFound(f"no job named {name!r} on {ctx.machine}", hint="see the jobs: orch status")
    remote_port = listening_port(job.command)
    if remote_port is None:
        raise OrchError(
            f"job {name!r} was not started under debugpy",
            hint=f"start it with: orch debug {name} -- python SCRIPT.py ARGS",
        )
    if job.state != "running":
        raise OrchError(
            f"job {name!r} is {job.state}; there is nothing to attach to",
            hint=f"start it again: orch debug {name} --replace -- …",
        )
    state = read_json(_state_path(ctx, target.alias, name)) or {}
    if state.get("remote_port") != remote_port:
        home = (await ctx.pool.run(target, 'printf %s "$HOME"', check=True)).stdout
        state = {
            "remote_port": remote_port,
            "local_port": None,
            "remote_root": expand_home(ctx.config.remote_dir, home),
        }
    listed = list_ports(ctx.layout, ctx.alias, ctx.machine, ctx.forwards())
    ports = {p.local_port: p for p in listed.ports}
    current = ports.get(int(state["local_port"])) if state.get("local_port") else None
    if current is not None and current.state == "active" and current.remote_port == remote_port:
        session = _session(ctx, name, state)
    else:
        session = await _forward(ctx, target.alias, name, remote_port, str(state["remote_root"]))
    # A job started a moment ago (F5 right after `orch debug`) may not listen yet.
    await wait_until_listening(
        ctx, jobs, target, name, remote_port, timeout=ATTACH_TIMEOUT_S, maybe_attached=True
    )
    return session


async def drop_ended_forwards(
    ctx: MachineContext, jobs: list[JobInfo], ports: list[PortForwardInfo]
) -> bool:
    """Stop the forward of every debug job that no longer runs (and forget it); True if any
    forward was stopped. Called with a fresh job list, so an ended job's port goes with it."""
    from sidecar.ssh.ports_service import remove_port

    folder = ctx.layout.home / "debug" / ctx.alias
    if not folder.is_dir():
        return False
    running = {job.name for job in jobs if job.state == "running"}
    forwarded = {port.local_port for port in ports}
    stopped = False
    for path in folder.glob("*.json"):
        if path.stem in running:
            continue
        local_port = (read_json(path) or {}).get("local_port")
        if local_port in forwarded:
            with contextlib.suppress(OrchError):
                await remove_port(ctx.layout, ctx.alias, ctx.machine, int(local_port))
                stopped = True
        path.unlink(missing_ok=True)
    return stopped


async def default_configuration(ctx: MachineContext) -> dict[str, Any]:
    """The entry for a service that runs debugpy itself on `[debug] remote_port` (forwarded
    to the same local port): the design brief's hand-written launch.json, generated."""
    cfg = ctx.config
    port = cfg.config.debug.remote_port
    target = await ctx.target()
    home = (await ctx.pool.run(target, 'printf %s "$HOME"', check=True)).stdout
    return attach_configuration(
        f"attach port {port}",
        port,
        cfg.local_dir,
        expand_home(cfg.remote_dir, home),
        just_my_code=cfg.config.debug.just_my_code,
    )


def write_launch_json(project_root: str, configuration: dict[str, Any]) -> Path:
    """Merge `configuration` into the project's .vscode/launch.json (file untouched on error)."""
    path = Path(project_root) / ".vscode" / "launch.json"
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else None
    except UnicodeDecodeError:
        raise OrchError(f"{path} is not UTF-8 text; it was left untouched") from None
    try:
        merged = merge_configuration(text, configuration)
    except LaunchJsonError as exc:
        raise OrchError(
            f"{path}: {exc}; the file was left untouched",
            hint="fix the JSON (comments and trailing commas are fine), then rerun",
        ) from None
    if merged != text:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, merged, mode=mode)
    return path
