"""The local orch agent: one per-user process that owns the long-lived things.

It holds an flock on `$ORCH_HOME/agent/agent.lock` (one agent per `$ORCH_HOME`), serves
one-line JSON requests on a Unix socket (see `client.py`) and runs, in one event loop over one
`ConnectionPool`, every sync loop (`sync.service.Owner`, `syncs.py`) and every machine's
forward owner (`ssh.forwarder.ForwardOwner`), so a sync and the forwards to the same machine
share one SSH connection. It also watches `orch status` per project and machine a client asked
about or subscribed to (`status.py`): `orch status` gets it from memory, and each language
server (one per VS Code window) gets every change pushed over a `subscribe` stream, so any
number of windows share one watch and one connection per machine.

What it runs is written to `wanted.json` as it changes: an agent killed with SIGKILL is
started again by the next client (`client.revive_if_wanted`) and brings it all back (each
sync starts with a full reconcile; forwards are re-added from their owner's last state). A
newer client replaces an older agent with a `shutdown` that keeps `wanted.json`. With no
sync, no forward and no request for `idle_exit_s`, the agent exits.

Once it stops, a request that reaches it is not run: it is answered `STOPPING` (the client
sends it again to the next agent, `agent_client.AgentDown`). A request it was already running
may finish for `STOP_GRACE_S`; then it is cut off (its connection closed without an answer:
the client says it may have run, and does not send it again unless it only reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from sidecar import __version__, agent_client
from sidecar.agent import memory, wanted
from sidecar.agent.status import StatusBoard, env_differs, error_reply
from sidecar.agent.syncs import SyncHost, SyncRun
from sidecar.agent.wanted import spec
from sidecar.agent_client import PROTOCOL, agent_paths
from sidecar.errors import OrchError, UsageError
from sidecar.layout import Layout
from sidecar.ssh.pool import ConnectionPool
from sidecar.state import serve_as_owner, stop_serving, write_json

if TYPE_CHECKING:
    from sidecar.ssh.forwarder import ForwardOwner

log = logging.getLogger("orch.agent")
WATCH_INTERVAL_S = 1.0
# How long a stopping agent lets the requests it already runs finish before cutting them off.
STOP_GRACE_S = float(os.environ.get("ORCH_AGENT_STOP_GRACE_S", "3"))
# The answer to a request that reaches a stopping agent: not run, send it to the next one.
STOPPING = {
    "ok": False,
    "stopping": True,
    "kind": "OrchError",
    "message": "the orch agent is stopping: the request was not run",
    "hint": "run it again: the next request starts a new agent",
}


class Agent(SyncHost):
    def __init__(self, layout: Layout, idle_exit_s: float = 600.0) -> None:
        self.layout = layout
        self.paths = agent_paths(layout)
        self.pool = ConnectionPool()
        self.idle_exit_s = idle_exit_s
        self.forwards: dict[str, ForwardOwner] = {}
        self.syncs: dict[str, SyncRun] = {}
        self.board = StatusBoard(layout, self.pool)
        self.done = asyncio.Event()
        self.last_request = time.monotonic()
        self._lock_fd: int | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._requests: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}  # being run
        self.stopping = False
        self.follows = 0  # job log streams being served
        self.windows: set[Any] = set()  # VS Code windows' hosted language servers (lsp_host)

    # -- life ---------------------------------------------------------------------------------
    async def start(self) -> bool:
        """Become the agent; False when another one already is."""
        owned = await serve_as_owner(self.paths.lock, self.paths.socket, self._serve)
        if owned is None:
            return False
        self._lock_fd, self._server = owned
        write_json(
            self.paths.state,
            {"pid": os.getpid(), "version": __version__, "socket": str(self.paths.socket)},
        )
        agent_client.in_process = self._in_process  # its own requests: no socket round trip
        await wanted.restore(self)
        self._spawn(self._watch(), "orch-agent-watch")
        return True

    async def stop(self, keep_wanted: bool = True) -> None:
        """Stop everything; `keep_wanted`: a successor (or a restart) brings it back."""
        self.stopping = True  # what ends from here on stays in wanted.json
        state = {"pid": os.getpid(), "version": __version__, "socket": str(self.paths.socket)}
        write_json(self.paths.state, {**state, "stopping": True})  # clients wait it out
        for window in list(self.windows):  # they run nothing more; the rest goes to a successor
            window.refuse()
        await self.board.close()  # subscribers are hung up on: they subscribe again
        if keep_wanted:
            self._save_wanted(with_specs=True)
        for run in list(self.syncs.values()):
            run.owner.stop.set()
        await asyncio.gather(*(r.task for r in self.syncs.values()), return_exceptions=True)
        for owner in list(self.forwards.values()):
            await owner.stop()
        await self._end_requests()
        for window in list(self.windows):  # their bridges connect to a successor
            window.close()
        if self._server is not None:
            server, self._server = self._server, None
            await stop_serving(server, self.paths.socket)
        with contextlib.suppress(FileNotFoundError):
            self.paths.socket.unlink()
        for task in list(self._tasks):  # (not this one: a `shutdown` or the idle exit runs
            if task is not asyncio.current_task():  # `stop` in a task of `_spawn`)
                task.cancel()
        await self.pool.close()
        write_json(self.paths.state, {"pid": None, "version": __version__})
        if not keep_wanted:
            write_json(self.paths.wanted, {"syncs": [], "forwards": []})
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        agent_client.in_process = None
        self.done.set()

    async def _end_requests(self) -> None:
        """Let the requests being run finish, up to `STOP_GRACE_S`; cut off the others (a
        log follow at once: its client goes on with the next agent)."""
        follows = {t for t in self._requests if t.get_name() == "orch-agent-follow"}
        running: set[asyncio.Future[Any]] = {t for t in self._requests if t not in follows}
        for window in self.windows:  # a window's commands too
            running.update(window.running())
        if running:
            await asyncio.wait(running, timeout=STOP_GRACE_S)
        for task, writer in list(self._requests.items()):
            if not task.done():
                log.info("stopping: %s cut off", task.get_name())
                task.cancel()
                writer.close()  # no answer: the client says it may have run

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def busy(self) -> bool:
        forwarding = any(o.forwards.specs() for o in self.forwards.values())
        return bool(self.syncs or forwarding or self.follows or self.windows)

    # -- wanted.json (sidecar/agent/wanted.py) ---------------------------------------------
    def _save_wanted(self, with_specs: bool = False) -> None:
        wanted.save(self, with_specs)

    # -- forwards -----------------------------------------------------------------------------
    async def host_forwards(self, machine: str, target: Any) -> ForwardOwner | None:
        """This agent owns the machine's forwards (None: another process already does)."""
        from sidecar.ssh.forwarder import ForwardOwner

        if target.alias in self.forwards:
            return self.forwards[target.alias]
        # Like the background forwarder, it lets go of a machine with its last forward.
        owner = ForwardOwner(self.layout, self.pool, target, machine, exit_when_empty=True)
        if not await owner.start():
            return None
        self.forwards[target.alias] = owner

        async def gone() -> None:  # `orch down` shuts an owner down through its own socket
            await owner.done.wait()
            if self.forwards.get(target.alias) is owner and not self.stopping:
                del self.forwards[target.alias]
                self._save_wanted()

        self._spawn(gone(), f"orch-agent-forwards-{target.alias}")
        self._save_wanted()
        return owner

    # -- status -------------------------------------------------------------------------------
    async def _watch(self) -> None:
        trimmed = time.monotonic()
        while not self.done.is_set():
            await asyncio.sleep(WATCH_INTERVAL_S)
            await self.board.expire()
            if time.monotonic() - trimmed >= memory.TRIM_EVERY_S:
                trimmed = time.monotonic()
                memory.trim()  # freed memory back to the system (issue 20's RSS goal)
            if (
                not self.busy()
                and not self.board.watched
                and time.monotonic() - self.last_request > self.idle_exit_s
            ):
                log.info("idle: nothing to own, exiting")
                self._spawn(self.stop(keep_wanted=False), "orch-agent-stop")
                return

    def info(self) -> dict[str, Any]:
        """What this agent owns: its connections, syncs and forwards (`orch agent info`)."""
        syncs = [{"project": r.project, "machine": r.machine} for r in self.syncs.values()]
        forwards = {a: [spec(s) for s in o.forwards.specs()] for a, o in self.forwards.items()}
        return {
            "ok": True,
            "pid": os.getpid(),
            "version": __version__,
            "connections": self.pool.connections(),
            "syncs": syncs,
            "forwards": forwards,
            "watched": len(self.board.watched),
            "subscribers": len(self.board.subscribers),  # thin clients' status streams
            "windows": len(self.windows),  # language servers hosted here (VS Code windows)
        }

    # -- requests -----------------------------------------------------------------------------
    async def handle(self, request: dict[str, Any], send: Any) -> dict[str, Any]:
        op = request.get("op")
        if op == "hello":
            return {"ok": True, "version": __version__, "protocol": PROTOCOL, "pid": os.getpid()}
        if op == "info":
            return self.info()
        if op == "status":
            differs = env_differs(request)  # (`orch status` sends its env key)
            if differs is not None:
                return differs
            return await self.board.status(
                str(request["cwd"]), request.get("machine"), bool(request.get("fresh")),
                lenient=bool(request.get("lenient")),
            )  # fmt: skip
        if op == "poke":
            self.board.poke()
            return {"ok": True}
        if op == "forwards.host":
            from sidecar.machines.base import SSHTarget

            target = SSHTarget.model_validate_json(request["target"])
            owner = await self.host_forwards(str(request["machine"]), target)
            return {"ok": True, "hosted": owner is not None}
        if op == "sync.start":
            return await self.sync_start(
                str(request["project"]), request.get("machine"),
                progress=lambda pct: send({"progress": pct}),
            )  # fmt: skip
        if op == "sync.stop":
            return await self.sync_stop(str(request["project"]), request.get("machine"))
        if op == "sync.now":
            return await self.sync_now(str(request["project"]), request.get("machine"))
        if op == "shutdown":
            keep = not request.get("forget", False)
            asyncio.get_running_loop().call_soon(lambda: self._spawn(self.stop(keep), "stop"))
            return {"ok": True, "shutdown": True}
        raise UsageError(f"unknown agent request {op!r}")

    async def _in_process(self, payload: dict[str, Any], progress: Any) -> dict[str, Any]:
        """A request made from inside this process (`agent_client.in_process`)."""

        def send(message: dict[str, Any]) -> None:
            if progress is not None and "progress" in message:
                progress(message["progress"])

        return await self.handle(payload, send)

    async def _follow(
        self, request: dict[str, Any], reader: asyncio.StreamReader, writer: Any, send: Any
    ) -> None:
        """A client's stream of a job's log (`calls.serve_follow`)."""
        from sidecar.agent import calls

        orch = self.board.orch(calls.project_of(request))
        self.follows += 1
        try:
            await calls.serve_follow(orch, request, reader, writer, send)
        finally:
            self.follows -= 1
            self.last_request = time.monotonic()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.last_request = time.monotonic()

        def send(message: dict[str, Any]) -> None:
            with contextlib.suppress(Exception):
                writer.write((json.dumps(message) + "\n").encode())

        try:
            line = await reader.readline()
            if not line.strip():  # a client that hung up before asking (a closing window)
                writer.close()
                return
            if self.stopping:  # not run: the client sends it to the next agent
                send(STOPPING)
                with contextlib.suppress(Exception):
                    await writer.drain()
                    writer.close()
                return
            request = json.loads(line)
            if request.get("op") in ("subscribe", "lsp"):
                await self._stream(request, reader, writer, send)
                return
            reply = await self._run_request(request, reader, writer, send)
            if reply is None:
                return
        except asyncio.CancelledError:
            if not self.stopping:
                raise
            writer.close()  # cut off by `stop` (`_end_requests`): the connection ends here
            return
        except OrchError as exc:
            reply = {"ok": False, **error_reply(exc)}
        except Exception as exc:
            log.exception("request failed")
            reply = {"ok": False, "kind": "OrchError", "message": f"orch agent: {exc}"}
        send(reply)
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()

    async def _stream(
        self, request: dict[str, Any], reader: asyncio.StreamReader, writer: Any, send: Any
    ) -> None:
        """A status subscription or a window's language server: until the client leaves (a
        stop hangs them up: `board.close`, `window.close`)."""
        if request.get("op") == "subscribe":
            await self.board.serve_subscription(request, reader, writer, send)
            return
        differs = env_differs({"env": request.get("env_key")})
        if differs is not None:  # a window with other settings runs its server itself
            send(differs)
            with contextlib.suppress(Exception):
                await writer.drain()
                writer.close()
            return
        from sidecar.agent import lsp_host  # a VS Code window's language server, bridged

        await lsp_host.serve(self, request, reader, writer, send)

    async def _run_request(
        self, request: dict[str, Any], reader: asyncio.StreamReader, writer: Any, send: Any
    ) -> dict[str, Any] | None:
        """A one-shot request or a log follow, known to `stop` while it runs (which lets it
        finish or cuts it off); its reply, None when there is nothing more to send."""
        task = asyncio.current_task()
        assert task is not None
        task.set_name(f"orch-agent-{request.get('op')}")
        self._requests[task] = writer
        try:
            if request.get("op") == "follow":
                await self._follow(request, reader, writer, send)
                with contextlib.suppress(Exception):
                    await writer.drain()
                    writer.close()
                return None
            if request.get("op") == "call":
                from sidecar.agent import calls

                reply = await calls.serve_call(self.board, request, reader, send)
                if reply is None:  # the client hung up: the call was cancelled
                    writer.close()
                return reply
            return await self.handle(request, send)
        finally:
            self._requests.pop(task, None)
