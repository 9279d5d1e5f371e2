"""Facade operations run by the agent for a client: the `{"op": "call"}` request, and the
`{"op": "follow"}` stream of a job's log.

A client (the language server of a VS Code window) names a project, a machine, one method of
an allow-list and its parameters; the agent runs it on that project's Orchestrator, which
uses the agent's one connection pool (`StatusBoard.orch`), and answers with the result as
JSON (a pydantic model as `model_dump(mode="json")`). So a window that starts machines and
jobs opens no SSH connection and never imports asyncssh. Only the methods in `CALLS` run (no
`getattr` of a client's string); each is bounded by `agent_client.CALL_TIMEOUTS_S`, and
`up`'s steps are streamed back as progress lines. Bad parameters are a UsageError; an
OrchError of the operation goes back whole (kind, message, hint, action, target) and the
client raises the same class (`agent_client.raise_reply`). A client that hangs up (a
cancelled editor request, a closed window) cancels what it asked for.

`follow` streams `{"event": "log", "text": …}` lines until the job ends (then `{"event":
"end"}`), a heartbeat `{"event": "alive"}` every `HEARTBEAT_S` while the job is quiet, and an
error as the final `{"ok": false, …}` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sidecar.agent.status import HEARTBEAT_S, error_reply
from sidecar.agent_client import CALL_TIMEOUTS_S
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


def _names(params: Params) -> list[str] | None:
    names = params.get("names")
    if names is None or (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return names
    raise UsageError(f"names: expected a list of machine names, got {names!r}")


CALLS: dict[str, Call] = {
    "up": lambda o, m, p, progress: o.up(m, progress=progress),
    "down": lambda o, m, p, _: o.down(m, force=_bool(p, "force")),
    "terminate": lambda o, m, p, _: o.down(m, terminate=True, force=_bool(p, "force")),
    "terminate_preview": lambda o, m, p, _: o.terminate_preview(m),
    "machine_status": lambda o, m, p, _: o.machine_status(m),
    "machines_overview": lambda o, m, p, _: o.machines_overview(_names(p)),
    "jobs_run": lambda o, m, p, _: o.jobs_run(
        _str(p, "name"), _command(p), _env(p), replace=_bool(p, "replace"), machine=m
    ),
    "jobs_restart": lambda o, m, p, _: o.jobs_restart(_str(p, "name"), m),
    "jobs_stop": lambda o, m, p, _: o.jobs_stop(_str(p, "name"), m),
    "jobs_rm": lambda o, m, p, _: o.jobs_rm(_str(p, "name"), _bool(p, "purge"), m),
    "jobs_status": lambda o, m, p, _: o.jobs_status(m),
    "jobs_logs": lambda o, m, p, _: o.jobs_logs(_str(p, "name"), _tail(p), m),
    "jobs_info": lambda o, m, p, _: o.jobs_info(_str(p, "name"), m),
    "idle_status": lambda o, m, p, _: o.idle_status(m),
    "idle_keep": lambda o, m, p, _: o.idle_keep(m),
    "ssh_config_write": lambda o, m, p, _: o.ssh_config_write(),
}


def as_json(value: Any) -> Any:
    """A result as JSON: models dumped the way the language server sends them."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    return value


async def run(orch: Orchestrator, request: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """One `call` request: the method's result as `{"ok": true, "result": …}`; `up`'s steps
    go to `progress`."""
    method = request.get("method")
    call = CALLS.get(method) if isinstance(method, str) else None
    if call is None or not isinstance(method, str):
        raise UsageError(
            f"the orch agent does not run {method!r}", hint=f"one of: {', '.join(sorted(CALLS))}"
        )
    params = request.get("params") or {}
    machine = request.get("machine")
    if not isinstance(params, dict) or not (machine is None or isinstance(machine, str)):
        raise UsageError("call: params must be an object and machine a string or null")
    bound = CALL_TIMEOUTS_S[method]
    try:
        async with asyncio.timeout(bound):
            result = await call(orch, machine, params, progress)
    except TimeoutError:
        raise OrchError(
            f"{method} did not finish within {bound:g} s in the orch agent",
            hint="see the agent's log (orch agent info) and try again",
        ) from None
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
    machine = request.get("machine")
    try:
        name = _str(request, "name")
        tail = _tail(request)
        if not (machine is None or isinstance(machine, str)):
            raise UsageError("follow: machine must be a string or null")
    except OrchError as exc:
        send({"ok": False, **error_reply(exc)})
        return

    async def pump() -> None:
        async for chunk in orch.jobs_follow(name, tail=tail, machine=machine):
            send({"event": "log", "text": chunk})
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
