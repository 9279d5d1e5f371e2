"""Facade operations run by the agent for a client: the `{"op": "call"}` request, and the
`{"op": "follow"}` stream of a job's log.

A client (the language server of a VS Code window) names a project, a machine, one method of
an allow-list and its parameters; the agent runs it on that project's Orchestrator, which
uses the agent's one connection pool (`StatusBoard.orch`), and answers with the result as
JSON (a pydantic model as `model_dump(mode="json")`). So a window that starts machines and
jobs opens no SSH connection and never imports asyncssh. Only the methods in `CALLS` run (no
`getattr` of a client's string); each is bounded by `agent_calls.CALL_TIMEOUTS_S`, and
`up`'s steps are streamed back as progress lines. Bad parameters are a UsageError; an
OrchError of the operation goes back whole (kind, message, hint, action, target) and the
client raises the same class (`agent_client.raise_reply`). A client that hangs up (a
cancelled editor request, a closed window) cancels what it asked for. A request that carries
`env` (the CLI's: `agent_client.env_key()`, a digest of AWS_*, ORCH_*, GITHUB_*… and HOME)
is not run when the agent was started with other values (`env_differs`): the CLI then runs it
in its own process, so `AWS_PROFILE=other orch up` never acts with the agent's account.

`follow` streams `{"event": "log", "text": …, "offset": N}` lines until the job ends (then
`{"event": "end"}`), a heartbeat `{"event": "alive"}` every `HEARTBEAT_S` while the job is
quiet, and an error as the final `{"ok": false, …}` line. `offset` (a job on a machine) is the
byte of its run.log just after the text: a client whose agent died asks a new one to go on
from there (`"offset": N` in the request), so no line is lost or repeated. `"follow": false`
reads the log once; `"archived": true` falls back to the machine's archive when it is not
running, as `orch logs` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sidecar.agent.status import HEARTBEAT_S, env_differs, error_reply
from sidecar.agent_calls import CALL_TIMEOUTS_S
from sidecar.errors import OrchError, UsageError

if TYPE_CHECKING:
    from sidecar.agent.status import StatusBoard
    from sidecar.app import Orchestrator

log = logging.getLogger("orch.agent")

Params = dict[str, Any]
Progress = Callable[[str], None]
Call = Callable[["Orchestrator", "str | None", Params, Progress], Awaitable[Any]]


def _str(params: Params, key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _bool(params: Params, key: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise UsageError(f"{key}: expected true or false, got {value!r}")
    return value


def _tail(params: Params) -> int | None:
    tail = params.get("tail")
    if tail is not None and (not isinstance(tail, int) or isinstance(tail, bool) or tail < 0):
        raise UsageError(f"tail: expected a count >= 0, got {tail!r}")
    return tail


def _command(params: Params) -> str | list[str]:
    command = params.get("command")
    if isinstance(command, str) or (
        isinstance(command, list) and all(isinstance(c, str) for c in command)
    ):
        return command
    raise UsageError(f"command: expected a string or a list of strings, got {command!r}")


def _env(params: Params) -> dict[str, str] | None:
    env = params.get("env")
    if env is None or (
        isinstance(env, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ):
        return env
    raise UsageError(f"env: expected an object of strings, got {env!r}")


def _opt_str(params: Params, key: str) -> str | None:
    value = params.get(key)
    if value is None or (isinstance(value, str) and value):
        return value
    raise UsageError(f"{key}: expected a non-empty string or null, got {value!r}")


def _opt_bool(params: Params, key: str) -> bool | None:
    value = params.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise UsageError(f"{key}: expected true, false or null, got {value!r}")


def _offset(params: Params) -> int | None:
    offset = params.get("offset")
    if offset is not None and (
        not isinstance(offset, int) or isinstance(offset, bool) or offset < 0
    ):
        raise UsageError(f"offset: expected a byte offset >= 0, got {offset!r}")
    return offset


def _argv(params: Params) -> list[str] | None:
    command = params.get("command")
    if command is None or (isinstance(command, list) and all(isinstance(c, str) for c in command)):
        return command
    raise UsageError(f"command: expected a list of strings or null, got {command!r}")


def _profile(orch: Orchestrator, machine: str | None, params: Params, say: Progress) -> Any:
    from pathlib import Path

    from pydantic import ValidationError

    from sidecar.results import ProfileRequest

    try:
        request = ProfileRequest.model_validate(params.get("request") or {})
    except ValidationError as exc:
        raise UsageError(f"request: {exc.errors()[0]['msg']}") from None
    out = _opt_str(params, "out")
    if out is not None and not os.path.isabs(out):
        raise UsageError(f"out: expected an absolute folder, got {out!r}")
    return orch.profile(request, Path(out) if out else None, machine, on_output=say)


def _names(params: Params) -> list[str] | None:
    names = params.get("names")
    if names is None or (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return names
    raise UsageError(f"names: expected a list of machine names, got {names!r}")


async def _backend_of(orch: Orchestrator, name: str, on: str | None) -> str | None:
    return orch.job_backend_of(name, on)  # (`orch rm`'s text: where the logs are kept)


CALLS: dict[str, Call] = {
    "up": lambda o, m, p, progress: o.up(m, progress=progress),
    "up_plan": lambda o, m, p, _: o.up_plan(m),
    "down": lambda o, m, p, _: o.down(m, force=_bool(p, "force")),
    "down_check": lambda o, m, p, _: o._refuse_down_with_jobs(m),
    "terminate": lambda o, m, p, _: o.down(m, terminate=True, force=_bool(p, "force")),
    "terminate_preview": lambda o, m, p, _: o.terminate_preview(m),
    "machine_status": lambda o, m, p, _: o.machine_status(m),
    "machines_overview": lambda o, m, p, _: o.machines_overview(_names(p)),
    "machines_inventory": lambda o, m, p, _: o.machines_inventory(_bool(p, "all_regions")),
    "jobs_run": lambda o, m, p, _: o.jobs_run(
        _str(p, "name"),
        _command(p),
        _env(p),
        replace=_bool(p, "replace"),
        machine=m,
        snapshot=_opt_bool(p, "snapshot"),
        on=_opt_str(p, "on"),
        outputs=_opt_str(p, "outputs"),
    ),
    "jobs_restart": lambda o, m, p, _: o.jobs_restart(_str(p, "name"), m, on=_opt_str(p, "on")),
    "jobs_stop": lambda o, m, p, _: o.jobs_stop(_str(p, "name"), m, on=_opt_str(p, "on")),
    "jobs_rm": lambda o, m, p, _: o.jobs_rm(
        _str(p, "name"), _bool(p, "purge"), m, on=_opt_str(p, "on")
    ),
    "jobs_status": lambda o, m, p, _: o.jobs_status(m),
    "jobs_logs": lambda o, m, p, _: o.jobs_logs(_str(p, "name"), _tail(p), m, on=_opt_str(p, "on")),
    "jobs_info": lambda o, m, p, _: o.jobs_info(_str(p, "name"), m, on=_opt_str(p, "on")),
    "job_backend_of": lambda o, m, p, _: _backend_of(o, _str(p, "name"), _opt_str(p, "on")),
    "attach_argv": lambda o, m, p, _: o.attach_argv(_str(p, "name"), m),
    "idle_status": lambda o, m, p, _: o.idle_status(m),
    "idle_keep": lambda o, m, p, _: o.idle_keep(m),
    "ssh_config_write": lambda o, m, p, _: o.ssh_config_write(),
    "ssh_argv": lambda o, m, p, _: o.ssh_argv(m, _argv(p), tty=_bool(p, "tty")),
    "probe": lambda o, m, p, _: o.probe(m),
    "debug_start": lambda o, m, p, say: o.debug_start(
        _str(p, "name"),
        _argv(p) or [],
        machine=m,
        env=_env(p),
        replace=_bool(p, "replace"),
        snapshot=_opt_bool(p, "snapshot"),
        say=say,
    ),
    "debug_attach": lambda o, m, p, _: o.debug_attach(_str(p, "name"), m),
    "debug_config": lambda o, m, p, _: o.debug_config(_opt_str(p, "name"), m),
    "profile": _profile,
}


def as_json(value: Any) -> Any:
    """A result as JSON: models dumped the way the language server sends them."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    return value


async def invoke(
    orch: Orchestrator, method: Any, machine: Any, params: Any, progress: Progress
) -> Any:
    """One allow-listed method with checked parameters, within its bound: its result as the
    facade returns it. The agent serves `call` with this, and a client that runs without the
    agent (`ORCH_NO_AGENT=1`, `Orchestrator.run_call`) the same in its own process."""
    call = CALLS.get(method) if isinstance(method, str) else None
    if call is None or not isinstance(method, str):
        raise UsageError(
            f"the orch agent does not run {method!r}", hint=f"one of: {', '.join(sorted(CALLS))}"
        )
    params = params or {}
    if not isinstance(params, dict) or not (machine is None or isinstance(machine, str)):
        raise UsageError("call: params must be an object and machine a string or null")
    bound = CALL_TIMEOUTS_S[method]
    try:
        async with asyncio.timeout(bound):
            return await call(orch, machine, params, progress)
    except TimeoutError:
        raise OrchError(
            f"{method} did not finish within {bound:g} s",
            hint="try again; the orch agent's log says more (orch agent info)",
        ) from None


async def run(orch: Orchestrator, request: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """One `call` request: the method's result as `{"ok": true, "result": …}`; `up`'s steps
    go to `progress`."""
    method, machine = request.get("method"), request.get("machine")
    result = await invoke(orch, method, machine, request.get("params"), progress)
    return {"ok": True, "result": as_json(result)}


def project_of(request: dict[str, Any]) -> str:
    project = request.get("project")
    if not isinstance(project, str) or not os.path.isabs(project):
        raise UsageError(f"project must be an absolute folder, got {project!r}")
    return project


async def serve_call(
    board: StatusBoard, request: dict[str, Any], reader: asyncio.StreamReader, send: Any
) -> dict[str, Any] | None:
    """A client's `call`, on the project's Orchestrator of the status board (the agent's
    pool); cancelled when the client hangs up (None then). Every watch reads anew after."""
    differs = env_differs(request)
    if differs is not None:
        return differs
    orch = board.orch(project_of(request))
    work = asyncio.ensure_future(run(orch, request, lambda message: send({"progress": message})))
    finished = await until_hangup(work, reader)
    board.poke()
    if not finished:
        log.info("%s cancelled: the client hung up", request.get("method"))
        return None
    result: dict[str, Any] = work.result()
    return result


async def until_hangup(work: asyncio.Future[Any], reader: asyncio.StreamReader) -> bool:
    """Wait for `work`; False (and `work` cancelled) when the client hangs up first."""
    hangup = asyncio.ensure_future(reader.read())  # the client sends nothing more
    try:
        await asyncio.wait({work, hangup}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the agent is stopping
        work.cancel()
        raise
    finally:
        hangup.cancel()
    if work.done():
        return True
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await work
    return False


async def serve_follow(
    orch: Orchestrator,
    request: dict[str, Any],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    send: Callable[[dict[str, Any]], None],
) -> None:
    """A client's `follow` stream of one job's log (see the module docstring)."""
    differs = env_differs(request)
    if differs is not None:
        send(differs)
        return
    machine = request.get("machine")
    try:
        name = _str(request, "name")
        tail, offset = _tail(request), _offset(request)
        on = _opt_str(request, "on")
        follow = request.get("follow", True)
        archived = _bool(request, "archived")
        if not (machine is None or isinstance(machine, str)) or not isinstance(follow, bool):
            raise UsageError("follow: machine must be a string or null, follow true or false")
    except OrchError as exc:
        send({"ok": False, **error_reply(exc)})
        return

    async def pump() -> None:
        if archived:  # `orch logs`: the machine's archive when it is not running (EC2)
            stream = orch.jobs_stream(name, tail, follow, machine, on, offset=offset)
        else:
            stream = orch.jobs_follow(name, tail=tail, machine=machine, offset=offset)
        async for chunk in stream:
            event: dict[str, Any] = {"event": "log", "text": chunk}
            resume = getattr(chunk, "offset", None)  # where a new stream resumes (tmux jobs)
            if resume is not None:
                event["offset"] = resume
            send(event)
            await writer.drain()
        send({"event": "end"})

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            send({"event": "alive"})

    work = asyncio.ensure_future(pump())
    beat = asyncio.ensure_future(heartbeat())
    try:
        if not await until_hangup(work, reader):
            log.info("follow of %s ended: the client hung up", name)
            return
    finally:
        beat.cancel()
    failure = work.exception()
    if isinstance(failure, OrchError):
        send({"ok": False, **error_reply(failure)})
    elif failure is not None:
        log.error("follow of %s failed", name, exc_info=failure)
        send({"ok": False, "kind": "OrchError", "message": f"orch agent: {failure}"})
