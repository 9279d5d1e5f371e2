"""The client side of the agent's facade calls and streams, on the caller's event loop.

`arequest` sends one `{"op": "call"}` (run by `sidecar.agent.calls`, bounded per method by
`CALL_TIMEOUTS_S`): progress lines go to a callback, an error reply is raised again as its
OrchError, and a cancelled caller closes the socket, which cancels the work in the agent.
`subscribe` reads a streamed request's `{"event": …}` lines (the watched status, a job's log)
with a bound on silence; `follow_log` streams a job's log and, when the agent dies
mid-stream, starts a new one and goes on from the byte it had reached.

Finding and starting the agent, its paths and the one-shot `call`/`acall` are
`sidecar.agent_client`'s; like it, this module is standard library only (a service-level
module: the facade imports it, never the agent's own modules).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from sidecar import agent_client as client
from sidecar.agent_client import CONNECT_TIMEOUT_S, AgentUnavailable, raise_reply, stopping
from sidecar.agent_client import AgentDown as AgentDown  # (not run: safe to send again)

if TYPE_CHECKING:
    from sidecar.agent_client import AgentPaths
    from sidecar.layout import Layout


class EnvDiffers(Exception):
    """The agent runs with another environment than the client (AWS profile, orch settings…):
    the request was not run; the client runs it itself (the CLI's `env`-checked calls)."""


# The facade operations a client may run in the agent (`{"op": "call"}`), each with the
# longest it may take there (seconds): the agent ends it with an error past that bound, the
# client waits `CALL_GRACE_S` more. A dead agent is noticed at once (its socket closes); the
# bound is for a wedged one. `sidecar.agent.calls` implements exactly these (a unit test).
CALL_TIMEOUTS_S: dict[str, float] = {
    "up": 1800.0,  # a cloud machine: launch, boot, bootstrap (progress is streamed)
    "up_plan": 120.0,
    "down": 900.0,
    "down_check": 120.0,
    "terminate": 900.0,
    "terminate_preview": 120.0,
    "machine_status": 60.0,
    "machines_overview": 60.0,
    "machines_inventory": 120.0,  # every region's EC2 machines with --all-regions
    "jobs_run": 900.0,  # includes the snapshot of the synced tree
    "jobs_restart": 900.0,
    "jobs_stop": 120.0,
    "jobs_rm": 120.0,
    "jobs_status": 60.0,
    "jobs_logs": 120.0,
    "jobs_info": 60.0,
    "job_backend_of": 60.0,
    "attach_argv": 120.0,
    "idle_status": 60.0,
    "idle_keep": 60.0,
    "ssh_config_write": 120.0,
    "ssh_argv": 120.0,
    "probe": 60.0,
    "debug_start": 900.0,  # a snapshot, the job, debugpy listening, the forward
    "debug_attach": 120.0,
    "debug_config": 120.0,
    "profile": 3600.0,  # the profiled workload (its output is streamed), then the fetch
}
CALL_GRACE_S = 10.0


async def arequest(
    paths: AgentPaths,
    payload: dict[str, Any],
    *,
    timeout: float,
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """One request from async code, on the caller's loop (no thread): progress lines go to
    `progress`, the final reply is returned (an error reply raised as its OrchError). A
    cancelled caller closes the socket, and the agent cancels the work (an `op: call`).
    AgentDown: nothing answered (not sent); AgentUnavailable: lost after it was sent."""
    import asyncio

    if client.in_process is not None:  # (read at each call: the agent sets it on itself)
        async with asyncio.timeout(timeout):
            return dict(await client.in_process(payload, progress))
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_unix_connection(str(paths.socket), limit=2**24)
    except (OSError, TimeoutError) as exc:
        raise AgentDown(f"the orch agent is not answering on {paths.socket} ({exc})") from None
    try:
        try:
            writer.write((json.dumps(payload) + "\n").encode())
            async with asyncio.timeout(client.STALL_S):
                await writer.drain()
        except TimeoutError:
            raise AgentUnavailable(client.wedged(paths)) from None
        except OSError as exc:  # closed before the request: it cannot have read it
            raise AgentDown(f"the orch agent went away before the request ({exc})") from None
        stall = client.Stall(paths)
        async with asyncio.timeout(timeout):
            while True:
                try:
                    async with asyncio.timeout(client.STALL_CHECK_S):
                        line = await reader.readline()
                except TimeoutError:
                    stall.check()  # (a stopped agent: AgentUnavailable, said)
                    continue
                if not line:
                    raise client.lost("stopped without an answer")
                reply = json.loads(line)
                if "progress" in reply and "ok" not in reply:
                    if progress is not None:
                        progress(reply["progress"])
                    continue
                if stopping(reply):
                    raise AgentDown(str(reply.get("message")))
                if reply.get("env_differs"):
                    raise EnvDiffers(str(reply.get("message")))
                raise_reply(reply)
                return dict(reply)
    except TimeoutError:
        raise AgentUnavailable(
            f"the orch agent did not answer {payload.get('method') or payload.get('op')!r} "
            f"within {timeout:g} s"
        ) from None
    except ConnectionResetError as exc:  # closed with the request unread: not run
        raise AgentDown(f"the orch agent went away before the request ({exc})") from None
    except (OSError, ValueError) as exc:
        raise client.lost(f"dropped the connection ({exc})") from None
    finally:
        writer.close()


async def subscribe(
    paths: AgentPaths, payload: dict[str, Any], silence_s: float
) -> AsyncIterator[dict[str, Any]]:
    """The events of one streamed request (`subscribe`, `follow`), as they come; ends when
    the agent closes the stream, raises AgentUnavailable when it cannot be reached or stays
    silent (no event, not even its heartbeat) for `silence_s`, and an error line as its
    OrchError. Closing the generator hangs up (the agent then ends the stream's work)."""
    import asyncio

    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races
    # with its result, and a cancelled subscriber must stop (a closing window's shutdown).
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_unix_connection(str(paths.socket), limit=2**24)
    except (OSError, TimeoutError) as exc:
        raise AgentDown(f"the orch agent is not answering on {paths.socket} ({exc})") from None
    try:
        writer.write((json.dumps(payload) + "\n").encode())
        try:
            async with asyncio.timeout(client.STALL_S):
                await writer.drain()
        except TimeoutError:
            raise AgentUnavailable(client.wedged(paths)) from None
        while True:
            try:
                async with asyncio.timeout(silence_s):
                    line = await reader.readline()
            except TimeoutError:
                raise AgentUnavailable(f"the orch agent was silent for {silence_s:g} s") from None
            except (OSError, ValueError) as exc:
                raise AgentUnavailable(f"the orch agent dropped the stream ({exc})") from None
            if not line:
                return
            message = json.loads(line)
            if stopping(message):
                raise AgentDown(str(message.get("message")))
            if message.get("env_differs"):
                raise EnvDiffers(str(message.get("message")))
            if "ok" in message and not message["ok"]:
                if message.get("kind"):  # an OrchError of the stream: raised as its class
                    raise_reply(message)
                raise AgentUnavailable(f"the orch agent refused: {message.get('message')}")
            if "event" in message:
                yield message
    finally:
        writer.close()


def follow_request(
    project: str,
    name: str,
    tail: int | None,
    machine: str | None,
    *,
    follow: bool = True,
    on: str | None = None,
    archived: bool = False,
    env: bool = False,
) -> dict[str, Any]:
    """The agent's `follow` request for a job's log (`sidecar.agent.calls.serve_follow`);
    `env`: with this process's `env_key()`, run only by an agent with the same settings."""
    request: dict[str, Any] = {"op": "follow", "project": project, "machine": machine}
    request |= {"name": name, "tail": tail, "follow": follow, "on": on, "archived": archived}
    if env:
        request["env"] = client.env_key()
    return request


FOLLOW_RETRIES = 3  # agent restarts in a row, with no log line between, before giving up
FOLLOW_HINT = "follow it again: orch logs -f {name}"


async def follow_log(
    layout: Layout | None, request: dict[str, Any], silence_s: float
) -> AsyncIterator[str]:
    """A `follow` request's log text, as it comes (the agent is started first when needed).
    If the agent dies (or goes silent) mid-stream, a new one is started and asked to go on
    from the byte the last chunk ended at (`offset`, sent by the agent with each chunk of a
    job on a machine), so no line is lost or repeated; a stream without offsets (a backend's
    CloudWatch stream) cannot go on and ends with AgentUnavailable, as does an agent that
    cannot be started. An error of the stream is raised as its OrchError; EnvDiffers when
    the request carries `env` and the agent has other settings (before any text)."""
    import asyncio

    request = dict(request)
    offset: int | None = None
    started = False  # a chunk without an offset was shown: a new stream cannot go on
    failures = 0
    why = "the orch agent ended the log stream"
    while failures <= FOLLOW_RETRIES:
        if offset is not None:
            request["offset"] = offset
        paths, _ = await asyncio.to_thread(client.ensure, layout)  # (AgentUnavailable: say it now)
        try:
            async for event in subscribe(paths, request, silence_s):
                if event.get("event") == "log":
                    failures = 0
                    at = event.get("offset")
                    offset = at if isinstance(at, int) else None
                    started = started or offset is None
                    yield str(event["text"])
                elif event.get("event") == "end":
                    return
        except AgentDown as exc:  # (a socket left by a dead agent) start a new one
            why = str(exc)
        except AgentUnavailable as exc:
            why = str(exc)
        if started:
            break
        failures += 1  # the agent died (or went silent): start a new one, go on
    raise AgentUnavailable(f"{why} (following job {request.get('name')})")
