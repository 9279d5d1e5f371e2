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
exits non-zero (VS Code then restarts the server). What is kept, the replay and the early
handshake below are `sidecar.bridge_replay`'s (`Replay`, the base of `Bridge`); the pumps,
the agent's socket and the restart are here.

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
server runs in this process instead (`sidecar.server`, as before the agent hosted it). So it
does, without the agent, when the agent runs with other settings than this window's (the
`env_key` digest the CLI sends too: AWS_*, ORCH_*, GITHUB_*…): it declines to host it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from sidecar import __version__
from sidecar import agent_client as client
from sidecar.bridge_replay import Replay, error_reply, frame, read_message, result_reply

MAX_RESTARTS = 5
RESTART_WINDOW_S = 120.0
SHUTDOWN_WAIT_S = 5.0
RECONNECT_S = 30.0  # an agent being replaced stops its syncs and forwards first
# The agent runs with the environment of the client that started it; a window sends its
# own ORCH_* values so that the agent can say which ones differ (not the secrets' values:
# only whether they differ matters, and the socket is the user's own, 0700).
ENV_PREFIX = "ORCH_"


class EnvDiffers(client.AgentUnavailable):
    """The agent runs with other settings (AWS_*, ORCH_*, GITHUB_*…, HOME) than this window:
    the window's server runs in this process, without the agent, as `orch` does then."""


def hosted() -> bool:
    """Whether the language server runs in the agent (the default)."""
    return client.enabled() and os.environ.get("ORCH_LSP_HOSTED", "1") != "0"


class AgentGone(Exception):
    """The agent's socket ended or failed."""


class Bridge(Replay):
    """The pumps between the window's stdio and the agent's socket, and the restart of a
    dead agent (what is replayed to it: `Replay`)."""

    def __init__(self, home: Path, stdin: BinaryIO, stdout: BinaryIO) -> None:
        super().__init__(home, stdin, stdout)
        self.connected = threading.Event()
        self.sock: socket.socket | None = None
        self.rfile: BinaryIO | None = None
        self.stdin_done = threading.Event()
        self.agent_pid: int | None = None

    # -- the agent's end ----------------------------------------------------------------------
    def connect(self) -> None:
        """A connection to the (started, current) agent, its answer read; once more to the
        next agent when this one was stopping."""
        try:
            self.sock, self.rfile, self.agent_pid = self._open()
        except client.AgentDown:
            self.sock, self.rfile, self.agent_pid = self._open()

    def _open(self) -> tuple[socket.socket, BinaryIO, int | None]:
        paths, _ = client.ensure(self.home)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(client.CONNECT_TIMEOUT_S)
            sock.connect(str(paths.socket))
            env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
            request = {"op": "lsp", "cwd": os.getcwd(), "env": env, "version": __version__}
            request["env_key"] = client.env_key()  # other settings: the agent declines
            sock.sendall((json.dumps(request) + "\n").encode())
            sock.settimeout(client.REQUEST_TIMEOUT_S)
            rfile = sock.makefile("rb")
            line = rfile.readline()
            reply = json.loads(line) if line.strip() else {}
            if client.stopping(reply):
                raise client.AgentDown(str(reply.get("message")))
            if reply.get("env_differs"):
                raise EnvDiffers(str(reply.get("message")))
            if not reply.get("ok"):
                why = reply.get("message") or "it closed the connection"
                raise client.AgentUnavailable(f"the orch agent refused the window: {why}")
            sock.settimeout(None)  # the agent may be quiet for long; it must take our writes:
            seconds = client.STALL_S
            timeval = struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
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
                            try:
                                self._send(body)
                            except BlockingIOError:  # SO_SNDTIMEO: it took nothing for long
                                self._stalled()
                            except OSError:
                                pass
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

    def _stalled(self) -> None:
        """The agent keeps its socket open but took nothing for `STALL_S` (stopped
        with SIGSTOP, or wedged): said, and the connection ended (a message may be cut in
        the middle), so the window's requests are answered and a reconnect is tried."""
        _say(client.wedged(client.agent_paths(self.home)) + "; reconnecting")
        assert self.sock is not None
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

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
            if b"orch/agentStopping" in body and self._stopping_notice(body):
                continue  # for the restart, not for the editor
            if b'"id"' in body and not self._passes(body):
                continue
            try:
                self.write_out(body)
            except (OSError, ValueError):
                return 1  # the editor is gone

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
            closing = self.shutdown_sent
            started, self.started_there = self.started_there, None
            again = []  # not run by the stopping agent (it said so): sent to the next one
            for request_id, method in list(self.pending.items()):
                if request_id == init_id and init_pending:
                    continue  # sent again below, under its own id: the client gets the answer
                if not closing and started is not None and request_id not in started:
                    again.append(request_id)
                    continue
                del self.pending[request_id]
                self.bodies.pop(request_id, None)
                if method == "shutdown":
                    self.write_out(result_reply(request_id, None))
                else:
                    why = (
                        f"the orch agent stopped while running {method}: it may have run; "
                        "see `orch status` for what happened before running it again"
                    )
                    self.write_out(error_reply(request_id, why))
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
                for request_id in again:
                    self._send(self.bodies[request_id])
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
        if isinstance(exc, EnvDiffers):  # this window's settings, in its own process
            os.environ["ORCH_NO_AGENT"] = "1"
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
