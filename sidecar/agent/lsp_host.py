"""The language server hosted in the agent: one pygls server per VS Code window.

`python -m sidecar` (what the extension spawns) is a standard-library bridge
(`sidecar.bridge`) that opens the agent's socket, sends `{"op": "lsp", "cwd", "env",
"version"}` and then pumps the window's LSP bytes both ways. Here each such connection gets
its own `OrchServer` (`sidecar.server.build_server(host=…)`), fed by pygls's own message
loop (`pygls.io_.run_async`, the loop `start_tcp` uses) over the socket's streams: not
`start_io`, which owns the process's stdin and event loop.

What was process-wide in a server of its own is per connection here (`WindowHost`): the
project folder when the client names none (the bridge's cwd), the log level (records
logged while serving this window are sent to it as `window/logMessage` at its level), the
status watch (an in-process subscription to the agent's `StatusBoard`, `BoardFeed`),
pygls's thread pool, and `exit` (ends this connection only; the agent goes on). Commands
run on the agent's own Orchestrator for the project (`StatusBoard.orch`: its one connection
pool), never over the agent's socket to itself; sync and forward requests the facade would
send to the agent are handled in-process too (`agent_client.in_process`).

Each command is bounded (`COMMAND_TIMEOUTS_S`), a window whose bridge stops reading is cut
off once `MAX_BUFFER` bytes wait for it, and a connection that ends (window closed, bridge
killed) cancels its requests, ends its status subscription and log follows, and shuts its
thread pool. This module (and pygls, lsprotocol) is imported at the first `lsp` request,
so the agent's own start stays as fast as the CLI needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.io_ import run_async

from sidecar import __version__
from sidecar.server import build_server
from sidecar.watch import changed

if TYPE_CHECKING:
    from sidecar.agent.server import Agent
    from sidecar.app import Orchestrator
    from sidecar.server.core import OrchServer

log = logging.getLogger("orch.agent")
window_log = logging.getLogger(__name__)  # under `sidecar`: also sent to the window (WindowLog)
STATUS_NOTIFICATION = "orch/status"
# Sent to a window's bridge when the agent stops (`WindowHost.refuse`): which of its requests
# were handed to a handler here; the bridge sends the others to the next agent.
STOPPING_NOTIFICATION = "orch/agentStopping"
MAX_BUFFER = 32 * 2**20  # bytes waiting for a window that does not read: it is cut off
DEFAULT_TIMEOUT_S = 120.0
COMMAND_TIMEOUTS_S = {  # the longest a window's command may run in the agent
    "orch.machine.up": 1800.0,
    "orch.machine.down": 900.0,
    "orch.machine.terminate": 900.0,
    "orch.jobs.run": 900.0,
    "orch.jobs.restart": 900.0,
    "orch.debug.start": 900.0,
    "orch.debug.attachConfig": 300.0,
    "orch.profile.run": 3600.0,
    "orch.sync.start": 660.0,
    "orch.sync.now": 660.0,
}
# Variables a window may differ in from the agent without it mattering (the agent runs
# with the environment of the client that started it; a window is told what differs).
_ENV_IGNORED = (
    "ORCH_HOME",
    "ORCH_NO_AGENT",
    "ORCH_LSP_HOSTED",
    "ORCH_AGENT_IDLE_S",
    "ORCH_AGENT_STOP_GRACE_S",
    "ORCH_AGENT_STALL_S",
)

# pygls logs every message it sends at INFO: not in the agent's log (a window's "debug"
# level is its own `window/logMessage` records, not pygls's trace).
logging.getLogger("pygls").setLevel(logging.WARNING)

# The window being served, as a weak reference: a task started while serving one (a shared
# status watch, a connection) keeps its context alive, and must not keep the window with it.
_window: contextvars.ContextVar[weakref.ref[WindowHost] | None] = contextvars.ContextVar(
    "orch_window", default=None
)
_LSP_LEVELS = {logging.ERROR: 1, logging.WARNING: 2, logging.INFO: 3}


class WindowLog(logging.Handler):
    """Sends a record logged while serving a window to that window (`window/logMessage`)
    when at or above its level: what the server's stderr showed when it was its own process."""

    def emit(self, record: logging.LogRecord) -> None:
        ref = _window.get()
        window = ref() if ref is not None else None
        if window is None or window.closed or record.levelno < window.level:
            return
        with contextlib.suppress(Exception):
            # LSP's MessageType: 1 error, 2 warning, 3 info, 4 log (debug).
            kind = next((v for k, v in _LSP_LEVELS.items() if record.levelno >= k), 4)
            text = self.format(record)
            window.loop.call_soon_threadsafe(window.log_message, kind, text)


_handler: WindowLog | None = None


def _levels(windows: set[WindowHost]) -> None:
    """The `sidecar` logger lets through what the most verbose window wants; the agent's
    own log (its handlers) keeps INFO."""
    global _handler
    sidecar = logging.getLogger("sidecar")
    if _handler is None:
        _handler = WindowLog()
        _handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        sidecar.addHandler(_handler)
        for handler in logging.getLogger().handlers:
            if handler.level == logging.NOTSET:
                handler.setLevel(logging.INFO)
    sidecar.setLevel(min([logging.INFO, *(w.level for w in windows)]))


class BoardFeed:
    """A hosted window's status: an in-process subscription to the agent's watch of its
    project and machine; every change is sent as `orch/status` (the extension's contract)."""

    def __init__(self, server: OrchServer, agent: Agent) -> None:
        self.server = server
        self.board = agent.board
        self.last: dict[str, Any] | None = None
        self._unsubscribe: Any = None
        self._machine: str | None = None
        self._stale = False

    def start(self) -> None:
        if self._unsubscribe is None:
            self._machine = self.server.options.machine
            # Outside the window's context: the watch it may start is shared and outlives it.
            project, shared = str(self.server.root), contextvars.Context()
            self._unsubscribe = shared.run(self.board.subscribe, project, self._machine, self._take)

    async def stop(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def poke(self) -> None:
        """A command ran: every watch reads anew; a switched machine is followed."""
        self._stale = True
        self.board.poke()
        if self._unsubscribe is not None and self.server.options.machine != self._machine:
            self._unsubscribe()
            self._unsubscribe = None
            self.start()

    def _take(self, payload: dict[str, Any]) -> None:
        if changed(self.last, payload):
            self.last = payload
            self.server.protocol.notify(STATUS_NOTIFICATION, payload)

    async def current(self, fresh: bool = False) -> dict[str, Any]:
        fresh, self._stale = fresh or self._stale, False
        machine = self.server.options.machine
        reply = await self.board.status(str(self.server.root), machine, fresh, lenient=True)
        payload: dict[str, Any] = reply["status"]
        self._take(payload)
        return payload


class _Writer:
    """pygls's writer for one window: the socket, cut off when the window stops reading."""

    def __init__(self, window: WindowHost, writer: asyncio.StreamWriter) -> None:
        self.window = window
        self.writer = writer

    def write(self, data: bytes) -> None:
        if self.window.closed:
            return
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > MAX_BUFFER:
            log.warning("a window stopped reading (%d bytes waiting): cut off", MAX_BUFFER)
            self.window.close()

    def close(self) -> None:
        self.window.close()


class WindowHost:
    """One bridged window: its server, its level, its end (`sidecar.server.core.Host`)."""

    def __init__(self, agent: Agent, request: dict[str, Any], writer: asyncio.StreamWriter):
        self.agent = agent
        cwd = request.get("cwd")
        self.cwd = Path(cwd) if isinstance(cwd, str) and os.path.isabs(cwd) else Path.home()
        env = request.get("env")
        self.env: dict[str, Any] = env if isinstance(env, dict) else {}
        self.level = logging.INFO
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.stop_event = threading.Event()  # pygls's loop looks at it between messages
        self.writer = writer
        self.server = build_server(host=self)
        self.server.protocol.set_writer(_Writer(self, writer))
        self.refusing = False  # the agent stops: nothing more is handed to a handler
        self.started: dict[Any, None] = {}  # the client's requests being handled here
        self._track(self.server.protocol)

    def _track(self, protocol: Any) -> None:
        """Know which of the client's requests were handed to a handler and not answered
        yet; hand nothing more once `refusing` (pygls's `handle_message`/`_send_response`
        wrapped on this window's protocol)."""
        handle, respond = protocol.handle_message, protocol._send_response

        def handle_message(message: Any) -> None:
            msg_id, method = getattr(message, "id", None), getattr(message, "method", None)
            if method is not None and self.refusing:
                return  # not run: the bridge sends it to the next agent
            if msg_id is not None and method is not None:
                self.started[msg_id] = None
            handle(message)

        def send_response(msg_id: Any, result: Any = None, error: Any = None) -> None:
            self.started.pop(msg_id, None)
            respond(msg_id, result, error)

        protocol.handle_message = handle_message
        protocol._send_response = send_response

    def refuse(self) -> None:
        """The agent stops: handle no more of the window's messages, and tell its bridge
        which requests it handed to a handler (they may finish during the agent's grace;
        the bridge sends the others, never run here, to the next agent)."""
        if self.refusing or self.closed:
            return
        self.refusing = True
        with contextlib.suppress(Exception):
            self.server.protocol.notify(STOPPING_NOTIFICATION, {"started": list(self.started)})

    def running(self) -> list[asyncio.Future[Any]]:
        """The futures of the client's requests being handled (the agent's stop waits)."""
        futures: dict[Any, Any] = self.server.protocol._request_futures
        found = [futures.get(msg_id) for msg_id in self.started]
        return [f for f in found if isinstance(f, asyncio.Future) and not f.done()]

    # -- sidecar.server.core.Host -----------------------------------------------------------
    def orch(self, root: Path) -> Orchestrator:
        return self.agent.board.orch(str(root))

    def timeout(self, command: str) -> float:
        bound = COMMAND_TIMEOUTS_S.get(command, DEFAULT_TIMEOUT_S)
        cap = os.environ.get("ORCH_LSP_TIMEOUT_S")  # a lower cap for every command (tests)
        return min(bound, float(cap)) if cap else bound

    def set_level(self, level: int) -> None:
        self.level = level
        _levels(self.agent.windows)

    def status_watcher(self, server: OrchServer) -> BoardFeed:
        return BoardFeed(server, self.agent)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stop_event.set()
        with contextlib.suppress(Exception):
            self.writer.close()  # the reader sees its end: pygls's loop returns

    # -- the window ---------------------------------------------------------------------------
    def log_message(self, kind: int, text: str) -> None:
        if not self.closed:
            params = types.LogMessageParams(type=types.MessageType(kind), message=text)
            self.server.protocol.notify(types.WINDOW_LOG_MESSAGE, params)

    def env_differences(self) -> list[str]:
        """The ORCH_* variables this window has otherwise than the agent (names only)."""
        names = {k for k in [*self.env, *os.environ] if k.startswith("ORCH_")}
        return sorted(n for n in names - set(_ENV_IGNORED) if self.env.get(n) != os.environ.get(n))

    async def run(self, reader: asyncio.StreamReader) -> None:
        _window.set(weakref.ref(self))  # this task's context: every handler task inherits it
        differ = self.env_differences()
        if differ:
            window_log.warning(
                "this window's environment differs from the orch agent's in %s; the agent's "
                "values apply (stop the agent, `python -m sidecar.agent stop`, to start it "
                "with this window's)",
                ", ".join(differ),
            )
        await run_async(
            stop_event=self.stop_event,
            reader=reader,
            protocol=self.server.protocol,
            logger=logging.getLogger("pygls.agent"),
            error_handler=self.server.report_server_error,
        )

    async def dispose(self) -> None:
        """Free what the window held: requests, subscription, follows, threads."""
        self.close()
        protocol = self.server.protocol
        for future in list(protocol._request_futures.values()):
            future.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await self.server.stop_areas()
        pool = self.server._thread_pool
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


async def serve(
    agent: Agent,
    request: dict[str, Any],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    send: Any,
) -> None:
    """One window's `lsp` connection, from the agent's one-line answer to its end."""
    started = time.monotonic()
    window = WindowHost(agent, request, writer)
    agent.windows.add(window)
    _levels(agent.windows)
    send({"ok": True, "version": __version__, "pid": os.getpid()})
    log.info("a window connected (%s; %d open)", window.cwd, len(agent.windows))
    try:
        await window.run(reader)
    except (OSError, ValueError, asyncio.IncompleteReadError):
        pass  # the bridge went away mid-message
    finally:
        agent.windows.discard(window)
        await window.dispose()
        _levels(agent.windows)
        log.info(
            "a window closed after %.0f s (%d open)", time.monotonic() - started, len(agent.windows)
        )
