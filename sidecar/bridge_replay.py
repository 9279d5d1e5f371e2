"""The bookkeeping of the window's end of the hosted language server (`sidecar.bridge`):
what a replay to a new agent needs, and the early `initialize` handshake.

`Replay` reads each message the bridge pumps and keeps the client's `initialize` request,
its `initialized` notification, its last successful `orch.machine.select`, the
`orch.jobs.follow` of each job it follows (until `unfollow`/`rm`), the text of its open
documents and the ids of its unanswered requests; `_replay` sends them to a new agent
(`initialize` under an id of its own, whose answer is swallowed; follows with `tail: 0`).
It also keeps the agent's last `initialize` answer (`lsp-initialize.json`, 0600, keyed by
orch's version and the client's capabilities and options) and answers a matching
`initialize` from it while no agent runs (`answer_early`). Also the LSP framing
(`read_message`, `frame`) and the JSON-RPC replies the bridge writes.

Standard library only, like the bridge (a test checks what `python -m sidecar` loads).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

from sidecar import __version__
from sidecar import agent_client as client

REQUEST_FAILED = -32803  # LSP's RequestFailed: the request was valid, it could not finish
INITIALIZE_CACHE = "lsp-initialize.json"
REPLAY_ID = "orch-bridge-replay-"
STOPPING_NOTIFICATION = "orch/agentStopping"  # (sidecar.agent.lsp_host's)


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


class Replay:
    """What the bridge keeps of its window's session (under `lock`) and the kept answer to
    its `initialize`; the pumps and the agent's socket are `sidecar.bridge.Bridge`'s."""

    def __init__(self, home: Path, stdin: BinaryIO, stdout: BinaryIO) -> None:
        self.home = home
        self.stdin = stdin
        self.stdout = stdout
        self.lock = threading.Lock()  # the socket, and what is kept for a replay
        self.out_lock = threading.Lock()  # writes to stdout
        self.initialize: dict[str, Any] | None = None
        self.initialized: bytes | None = None
        self.documents: dict[str, dict[str, Any]] = {}  # uri -> textDocument of didOpen
        self.pending: dict[Any, str] = {}  # the client's unanswered requests: id -> method
        self.bodies: dict[Any, bytes] = {}  # and each one as sent (sent again if not run)
        # The stopping agent's word on which of them it started (None: it said nothing, as
        # when killed): the others were never run there and go to the next agent.
        self.started_there: set[Any] | None = None
        self.swallow: set[Any] = set()  # ids of replayed requests whose answer is dropped
        # Commands whose effect lives in the server, kept to be run again in a new agent: the
        # window's machine (`orch.machine.select`, the last that succeeded) and each job log
        # it follows (`orch.jobs.follow` until `unfollow`/`rm`), keyed "select" / "follow:NAME".
        self.keeping: dict[Any, tuple[str, bytes]] = {}  # such requests in flight, by id
        self.kept: dict[str, bytes] = {}
        self.shutdown_sent = False
        self.exit_sent = False
        self.restarts: list[float] = []

    def _send(self, body: bytes) -> None:
        """One message to the agent (the bridge's socket; call with `lock` held)."""
        raise NotImplementedError

    def write_out(self, body: bytes) -> None:
        with self.out_lock:
            self.stdout.write(frame(body))
            self.stdout.flush()

    def _keep(self, message: dict[str, Any], body: bytes) -> None:
        """Note what a replay needs (call with `lock` held)."""
        method = message.get("method")
        if "id" in message and method is not None:
            self.pending[message["id"]] = method
            self.bodies[message["id"]] = body
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
            self.bodies.pop(message["id"], None)
            keeping = self.keeping.pop(message["id"], None)
            if keeping is not None and "error" not in message:
                self.kept[keeping[0]] = keeping[1]
        return True

    def _stopping_notice(self, body: bytes) -> bool:
        """The agent's `orch/agentStopping` (its list of the requests it started), noted;
        False for any other message."""
        try:
            message = json.loads(body)
        except ValueError:
            return False
        if not isinstance(message, dict) or message.get("method") != STOPPING_NOTIFICATION:
            return False
        params = message.get("params")
        started = params.get("started") if isinstance(params, dict) else None
        with self.lock:
            self.started_there = set(started) if isinstance(started, list) else None
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
            self.write_out(result_reply(message.get("id"), kept["result"]))
            return True, None
        return True, body

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


def result_reply(request_id: Any, result: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}).encode()


def error_reply(request_id: Any, message: str) -> bytes:
    error = {"code": REQUEST_FAILED, "message": message}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode()
