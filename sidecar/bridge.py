"""`python -m sidecar` with the orch agent (the default): the VS Code window's end of the
language server hosted in the agent (`sidecar.agent.lsp_host`).

Standard library only (a test checks that pydantic, pygls, lsprotocol and asyncssh are not
loaded), so a window costs ~10 MB and starts in tens of milliseconds. It finds or starts the
agent the way every client does (`agent_client.ensure`: version check, start on demand),
opens its socket, sends one line `{"op": "lsp", "cwd", "env", "version"}`, reads the agent's
one-line answer, and from then on pumps LSP messages both ways: a thread reads the editor's
stdin into the socket, the main thread the socket into stdout.

It reads the messages as it pumps them, to survive an agent that dies (kill -9, a crash): it
keeps the client's `initialize` request, its `initialized` notification, its last
successful `orch.machine.select` (the window's machine) and `orch.jobs.follow` of each job
it follows (replayed with `tail: 0`: the log goes on from where it is, lines written while
no agent ran are not shown), the text of the documents it has open (orch.toml files), and
which requests are unanswered. When the socket
ends without the client having said `exit`, every unanswered request is answered with a
JSON-RPC error (the client may try again), a new agent is started, and the kept messages are
replayed to it (`initialize` under an id of its own, whose answer is swallowed): the window
goes on without a restart. After `MAX_RESTARTS` within `RESTART_WINDOW_S` it gives up and
exits non-zero (VS Code then restarts the server).

A window that starts while no agent runs would wait for the agent's start and then its
language-server imports before `initialize` is answered (~0.7 s quiet, over 1 s loaded). The
bridge keeps the agent's last `initialize` answer (`lsp-initialize.json` in the agent's folder,
0600), keyed by orch's version and the client's capabilities and initialization options —
all the answer depends on — and with no agent running answers a matching `initialize` from it
at once, then starts the agent and sends it the `initialize` (its answer swallowed, as in a
replay). The window's next requests wait for the agent as before; only the handshake is
early. If the agent then cannot be started, the answer is forgotten and the bridge exits 1:
the editor starts the server again, which then runs in this process.

With `ORCH_NO_AGENT=1` or `ORCH_LSP_HOSTED=0`, or when no agent can be started, the language
server runs in this process instead (`sidecar.server`, as before the agent hosted it).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from sidecar import __version__
from sidecar import agent_client as client

MAX_RESTARTS = 5
RESTART_WINDOW_S = 120.0
REQUEST_FAILED = -32803  # LSP's RequestFailed: the request was valid, it could not finish
SHUTDOWN_WAIT_S = 5.0
RECONNECT_S = 30.0  # an agent being replaced stops its syncs and forwards first
INITIALIZE_CACHE = "lsp-initialize.json"
REPLAY_ID = "orch-bridge-replay-"
# The agent runs with the environment of the client that started it; a window sends its
# own ORCH_* values so that the agent can say which ones differ (not the secrets' values:
# only whether they differ matters, and the socket is the user's own, 0700).
ENV_PREFIX = "ORCH_"


def hosted() -> bool:
    """Whether the language server runs in the agent (the default)."""
    return client.enabled() and os.environ.get("ORCH_LSP_HOSTED", "1") != "0"


def read_message(stream: BinaryIO) -> bytes | None:
    """One LSP message's body (headers dropped); None at the end of the stream."""
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            if length is not None:
                break
            continue
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = stream.read(length)
    return body if len(body) == length else None


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class AgentGone(Exception):
    """The agent's socket ended or failed."""


class Bridge:
    def __init__(self, home: Path, stdin: BinaryIO, stdout: BinaryIO) -> None:
        self.home = home
        self.stdin = stdin
        self.stdout = stdout
        self.lock = threading.Lock()  # the socket, and what is kept for a replay
        self.out_lock = threading.Lock()  # writes to stdout
        self.connected = threading.Event()
        self.sock: socket.socket | None = None
        self.rfile: BinaryIO | None = None
        self.initialize: dict[str, Any] | None = None
        self.initialized: bytes | None = None
        self.documents: dict[str, dict[str, Any]] = {}  # uri -> textDocument of didOpen
        self.pending: dict[Any, str] = {}  # the client's unanswered requests: id -> method
        self.swallow: set[Any] = set()  # ids of replayed requests whose answer is dropped
        # Commands whose effect lives in the server, kept to be run again in a new agent: the
        # window's machine (`orch.machine.select`, the last that succeeded) and each job log
        # it follows (`orch.jobs.follow` until `unfollow`/`rm`), keyed "select" / "follow:NAME".
        self.keeping: dict[Any, tuple[str, bytes]] = {}  # such requests in flight, by id
        self.kept: dict[str, bytes] = {}
        self.shutdown_sent = False
        self.exit_sent = False
        self.stdin_done = threading.Event()
        self.restarts: list[float] = []
        self.agent_pid: int | None = None

    # -- the agent's end ----------------------------------------------------------------------
    def connect(self) -> None:
        """A connection to the (started, current) agent, its answer read."""
        self.sock, self.rfile, self.agent_pid = self._open()

    def _open(self) -> tuple[socket.socket, BinaryIO, int | None]:
        paths, _ = client.ensure(self.home)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(client.CONNECT_TIMEOUT_S)
            sock.connect(str(paths.socket))
            env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
            request = {"op": "lsp", "cwd": os.getcwd(), "env": env, "version": __version__}
            sock.sendall((json.dumps(request) + "\n").encode())
            sock.settimeout(client.REQUEST_TIMEOUT_S)
            rfile = sock.makefile("rb")
            line = rfile.readline()
            reply = json.loads(line) if line.strip() else {}
            if not reply.get("ok"):
                why = reply.get("message") or "it closed the connection"
                raise client.AgentUnavailable(f"the orch agent refused the window: {why}")
            sock.settimeout(None)
        except (OSError, ValueError) as exc:
            sock.close()
            raise client.AgentUnavailable(f"the orch agent did not answer ({exc})") from None
        except BaseException:
            sock.close()
            raise
        return sock, rfile, reply.get("pid")

    def _send(self, body: bytes) -> None:
        assert self.sock is not None
        self.sock.sendall(frame(body))

    # -- the editor's end -----------------------------------------------------------------------
    def write_out(self, body: bytes) -> None:
        with self.out_lock:
            self.stdout.write(frame(body))
            self.stdout.flush()

    def _keep(self, message: dict[str, Any], body: bytes) -> None:
        """Note what a replay needs (call with `lock` held)."""
        method = message.get("method")
        if "id" in message and method is not None:
            self.pending[message["id"]] = method
        if method == "initialize":
            self.initialize = message
        elif method == "workspace/executeCommand":
            self._keep_command(message, body)
        elif method == "initialized":
            self.initialized = body
        elif method == "shutdown":
            self.shutdown_sent = True
        elif method == "exit":
            self.exit_sent = True
        elif method == "textDocument/didOpen":
            doc = dict(message["params"]["textDocument"])
            self.documents[doc["uri"]] = doc
        elif method == "textDocument/didChange":
            params = message["params"]
            known = self.documents.get(params["textDocument"]["uri"])
            if known is not None:
                known["version"] = params["textDocument"].get("version", known.get("version"))
                for change in params.get("contentChanges") or []:
                    if "range" not in change:  # orch's server asks for full text
                        known["text"] = change["text"]
        elif method == "textDocument/didClose":
            self.documents.pop(message["params"]["textDocument"]["uri"], None)

    def pump_in(self) -> None:
        """The editor's messages into the socket (a thread)."""
        try:
            while True:
                body = read_message(self.stdin)
                if body is None:
                    break
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                message: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
                while True:
                    with self.lock:
                        if self.sock is not None:
                            self._keep(message, body)
                            # A dead agent: a request is answered at the restart.
                            with contextlib.suppress(OSError):
                                self._send(body)
                            break
                        if message.get("method") == "exit" or self.shutdown_sent:
                            self.exit_sent = message.get("method") == "exit"
                            return  # no agent to tell: the window is closing anyway
                    self.connected.wait(1.0)
                if self.exit_sent:
                    break
        finally:
            self.stdin_done.set()
            if self.exit_sent:  # the agent ends the connection; if it does not, so do we
                timer = threading.Timer(SHUTDOWN_WAIT_S, self.hang_up)
                timer.daemon = True  # never holds the process's exit
                timer.start()
            else:  # the editor is gone without `exit`: end the window in the agent too
                self.hang_up()

    def hang_up(self) -> None:
        with self.lock:
            if self.sock is not None:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)

    def pump_out(self) -> int:
        """The agent's messages to stdout (the main thread); the process's exit code."""
        while True:
            assert self.rfile is not None
            try:
                body = read_message(self.rfile)
            except (OSError, ValueError):
                body = None
            if body is None:
                if self.exit_sent or self.stdin_done.is_set():
                    return 0 if self.shutdown_sent else 1
                if not self.restart():
                    return 0 if self.shutdown_sent else 1
                continue
            if b'"id"' in body and not self._passes(body):
                continue
            try:
                self.write_out(body)
            except (OSError, ValueError):
                return 1  # the editor is gone

    def _passes(self, body: bytes) -> bool:
        """False for the answer to a replayed `initialize`; notes answered requests."""
        try:
            message = json.loads(body)
        except ValueError:
            return True
        if not isinstance(message, dict) or "method" in message or "id" not in message:
            return True
        with self.lock:
            # The answer to the window's `initialize`, or to its replay: kept for next time.
            answer = self.initialize is not None and "result" in message
            init_ids = (self.initialize or {}).get("id"), f"{REPLAY_ID}{len(self.restarts)}"
            if answer and message["id"] in init_ids:
                self._store_answer(message["result"])
            if message["id"] in self.swallow:
                self.swallow.discard(message["id"])
                return False
            self.pending.pop(message["id"], None)
            keeping = self.keeping.pop(message["id"], None)
            if keeping is not None and "error" not in message:
                self.kept[keeping[0]] = keeping[1]
        return True

    def _keep_command(self, message: dict[str, Any], body: bytes) -> None:
        command, arguments = _command(message)
        name = arguments.get("name")
        if command == "orch.machine.select":
            self.keeping[message.get("id")] = ("select", body)
        elif command == "orch.jobs.follow" and isinstance(name, str):
            self.keeping[message.get("id")] = (f"follow:{name}", body)
        elif command in ("orch.jobs.unfollow", "orch.jobs.rm") and isinstance(name, str):
            self.kept.pop(f"follow:{name}", None)

    # -- the handshake before the agent is up -------------------------------------------------
    def _cache_path(self) -> Path:
        return client.agent_paths(self.home).folder / INITIALIZE_CACHE

    def _store_answer(self, result: Any) -> None:
        """Keep the agent's answer to this window's `initialize` (call with `lock` held)."""
        assert self.initialize is not None
        entry = {"key": _initialize_key(self.initialize), "result": result}
        path = self._cache_path()
        with contextlib.suppress(OSError):
            if path.exists() and json.loads(path.read_text()) == entry:
                return
        with contextlib.suppress(OSError, ValueError):
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(entry, out)
            os.replace(tmp, path)

    def forget_answer(self) -> None:
        with contextlib.suppress(OSError):
            self._cache_path().unlink()

    def answer_early(self) -> tuple[bool, bytes | None]:
        """With no agent running: read the editor's first message and answer an `initialize`
        that matches the kept answer at once. (whether there is anything to do, the message
        still to be sent to the agent or None)."""
        try:
            if client.alive(client.agent_paths(self.home)):
                return True, None
            kept = json.loads(self._cache_path().read_text())
        except (OSError, ValueError):
            return True, None
        body = read_message(self.stdin)
        if body is None:
            return False, None
        try:
            message = json.loads(body)
        except ValueError:
            return True, body
        if (
            isinstance(message, dict)
            and message.get("method") == "initialize"
            and isinstance(kept, dict)
            and kept.get("key") == _initialize_key(message)
            and "result" in kept
        ):
            self.initialize = message
            self.write_out(_reply(message.get("id"), kept["result"]))
            return True, None
        return True, body

    # -- an agent that died -------------------------------------------------------------------
    def restart(self) -> bool:
        """Answer what was in flight, start a new agent, replay; False: give up."""
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S] + [now]
        with self.lock:
            self.connected.clear()
            old, self.sock = self.sock, None
            if old is not None:
                old.close()
            init_id = self.initialize.get("id") if self.initialize else None
            init_pending = init_id is not None and init_id in self.pending
            for request_id, method in list(self.pending.items()):
                if request_id == init_id and init_pending:
                    continue  # sent again below, under its own id: the client gets the answer
                del self.pending[request_id]
                if method == "shutdown":
                    self.write_out(_reply(request_id, None))
                else:
                    why = f"the orch agent stopped while running {method}; try again"
                    self.write_out(_error(request_id, why))
            closing = self.shutdown_sent
            if not closing and len(self.restarts) > MAX_RESTARTS:
                _say(f"the orch agent stopped {len(self.restarts)} times: giving up")
                return False
        if closing:  # the client said `shutdown`: only its `exit` (or stdin's end) is left
            self.stdin_done.wait(SHUTDOWN_WAIT_S)
            return False
        with self.lock:
            _say(f"the orch agent (pid {self.agent_pid}) went away: starting a new one")
            try:
                self._reconnect()
                self._replay(init_pending)
            except (client.AgentUnavailable, OSError) as exc:
                _say(f"could not reconnect to the orch agent: {exc}")
                return False
            self.connected.set()
        _say(f"reconnected to the orch agent (pid {self.agent_pid})")
        return True

    def _reconnect(self) -> None:
        """Connect again, waiting out an agent that is still stopping (a newer client
        replacing it closes the windows first), up to `RECONNECT_S`."""
        deadline = time.monotonic() + RECONNECT_S
        while True:
            try:
                self.connect()
                return
            except (client.AgentUnavailable, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _replay(self, init_pending: bool) -> None:
        if self.initialize is None:
            return
        message = dict(self.initialize)
        if not init_pending:
            message["id"] = f"{REPLAY_ID}{len(self.restarts)}"
            self.swallow.add(message["id"])
        self._send(json.dumps(message).encode())
        if self.initialized is not None:
            self._send(self.initialized)
        # The machine first: the follows act on it.
        for n, (key, body) in enumerate(sorted(self.kept.items(), key=lambda k: k[0] != "select")):
            again = json.loads(body)
            again["id"] = f"orch-bridge-{key}-{len(self.restarts)}-{n}"
            if key.startswith("follow:"):  # from where the log is now: no lines twice
                again["params"]["arguments"][0]["tail"] = 0
            self.swallow.add(again["id"])
            self._send(json.dumps(again).encode())
        for doc in self.documents.values():
            note = {"jsonrpc": "2.0", "method": "textDocument/didOpen"}
            self._send(json.dumps({**note, "params": {"textDocument": doc}}).encode())


def _command(message: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """An executeCommand's name and its arguments object."""
    params = message.get("params")
    if not isinstance(params, dict):
        return None, {}
    arguments = params.get("arguments") or [{}]
    first = arguments[0] if isinstance(arguments, list) and arguments else {}
    return params.get("command"), first if isinstance(first, dict) else {}


def _initialize_key(message: dict[str, Any]) -> str:
    """What the agent's `initialize` answer depends on besides its code: orch's version and
    the client's capabilities and initialization options."""
    params = message.get("params") if isinstance(message.get("params"), dict) else {}
    assert isinstance(params, dict)
    what = {
        "version": __version__,
        "capabilities": params.get("capabilities"),
        "options": params.get("initializationOptions"),
    }
    return json.dumps(what, sort_keys=True)


def _reply(request_id: Any, result: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}).encode()


def _error(request_id: Any, message: str) -> bytes:
    error = {"code": REQUEST_FAILED, "message": message}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode()


def _say(message: str) -> None:
    print(f"orch: {message}", file=sys.stderr, flush=True)


def main() -> int:
    """Bridge the window to the agent's language server; 0 after the client's `exit`."""
    bridge = Bridge(client.home_from_env(), sys.stdin.buffer, sys.stdout.buffer)
    go_on, first = bridge.answer_early()
    if not go_on:
        return 0  # the editor closed before saying anything
    early = bridge.initialize is not None or first is not None
    try:
        bridge.connect()
    except (client.AgentUnavailable, OSError) as exc:
        if early:  # the editor's first messages are read: start over without the shortcut
            bridge.forget_answer()
            _say(f"{exc}; exiting so that the editor starts the server again")
            return 1
        _say(f"{exc}; running the language server in this process")
        return run_in_process()
    with bridge.lock:
        if first is not None:
            try:
                parsed = json.loads(first)
            except ValueError:
                parsed = None
            bridge._keep(parsed if isinstance(parsed, dict) else {}, first)
            bridge._send(first)
        elif bridge.initialize is not None:
            bridge._replay(init_pending=False)  # answered already: the agent's answer dropped
    bridge.connected.set()
    threading.Thread(target=bridge.pump_in, name="orch-bridge-stdin", daemon=True).start()
    return bridge.pump_out()


def run_in_process() -> int:
    """The language server in this process (`ORCH_LSP_HOSTED=0`, `ORCH_NO_AGENT=1`)."""
    import logging

    # As the CLI does: no scan of installed packages for pydantic plugins (importlib.metadata,
    # ~20 ms of the start); orch uses none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from sidecar.server import build_server

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # pygls logs every message at INFO; the "debug" log level (initializationOptions) shows it.
    logging.getLogger("pygls").setLevel(logging.WARNING)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    build_server().start_io()
    return 0
