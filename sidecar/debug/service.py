"""`orch debug`: start a job under debugpy, forward a local port to it, and produce the VS Code
attach configuration (host, forwarded port, pathMappings from the local project folder to the
folder the job runs in on the machine — a snapshot or the synced folder).

Per debug job, `$ORCH_HOME/debug/<alias>/<job>.json` remembers the remote port, the local port
and the remote root, so `orch debug attach`, `orch debug config` and the extension resolve the
same values later, from any process.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from remote_config.debug import debugpy_argv, expand_home, listening_port
from remote_config.launch_json import LaunchJsonError, attach_configuration, merge_configuration
from sidecar.debug.bootstrap import ensure_debugpy
from sidecar.errors import NotFound, OrchError, PortBusy, UsageError
from sidecar.state import atomic_write, read_json, write_json

if TYPE_CHECKING:
    from sidecar.context import MachineContext
    from sidecar.jobs.backend import JobBackend


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
    workdir = await jobs.prepare_code(snapshot)
    remote_root = workdir or expand_home(ctx.config.remote_dir, remote.home)
    await jobs.run(name, command, job_env, replace=replace, workdir=workdir)
    return await _forward(ctx, target.alias, name, remote_port, remote_root)


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
        return _session(ctx, name, state)
    return await _forward(ctx, target.alias, name, remote_port, str(state["remote_root"]))


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
