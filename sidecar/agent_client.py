"""Talking to the local orch agent: find it, start it, replace an older one, ask it one thing.

A service-level module (the agent itself, `sidecar/agent/`, is a host like the CLI and the
language server): the facade and the services that hand work to the agent (`sync.control`,
`ssh.ports_service`) import this, never the agent's own modules. Standard library only (plus
`sidecar.layout`, which is too), so a thin client such as `orch status` pays no pydantic or
asyncssh import. The agent is found through its
state folder `$ORCH_HOME/agent/`: `agent.lock` (held by the live agent), `state.json` (pid,
version, socket path) and the Unix socket in orch's short control folder. Every request is one
JSON line; the agent answers with zero or more `{"progress": …}` lines and one final line
carrying `ok`; a `subscribe` request instead stays open and streams `{"event": …}` lines
(the watched status as it changes, and a heartbeat). Every wait is bounded: a dead or wedged
socket is an `AgentUnavailable` with a clear message, never a hang.

Here: the agent's paths, whether it is alive, starting/replacing it (`ensure`), the settings
digest (`env_key`, from `sidecar.agent_env`) and one-shot requests (`call`, `acall` in a
thread). A request the agent did not run (nothing answered, it was stopping, it reset the
connection with the request unread) is `AgentDown`, which its callers send once more to the
next agent; one lost after it was sent may have run (`lost`) and is never sent again
(docs/agent.md). The facade calls and the streams that run on the caller's event loop
(`arequest`, `subscribe`, `follow_log`) are `sidecar.agent_calls`'s.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar import __version__
from sidecar.agent_env import env_key as env_key  # the settings digest every request carries
from sidecar.agent_stall import STALL_CHECK_S, STALL_S, Stall, stopped_pid, wedged

if TYPE_CHECKING:
    from sidecar.layout import Layout

PROTOCOL = 1
CONNECT_TIMEOUT_S = 1.0
REQUEST_TIMEOUT_S = 10.0
START_TIMEOUT_S = 15.0
STOP_WAIT_S = 20.0  # for a stopping agent to let its requests finish, stop its syncs, exit
_MAX_SOCKET = 100  # Unix socket paths are limited to ~104 bytes


class AgentUnavailable(Exception):
    """The agent is not running, or did not answer in time (the message says which)."""


class AgentDown(AgentUnavailable):
    """The request was not run: nothing answered on the agent's socket (it was not sent), or
    the agent answered that it is stopping before doing anything. Safe to send again, to the
    next agent (`ensure` waits out a stopping one and starts a new one)."""


def lost(why: str) -> AgentUnavailable:
    """A request whose answer never came (`why`: the agent stopped, died or dropped it
    after it was sent): it may have run, wholly or in part, so it is not sent again. (A
    connection reset is not this: the agent closed it with the request unread, AgentDown.)"""
    return AgentUnavailable(f"the orch agent {why}, after it got the request: it may have run")


def stopping(reply: dict[str, Any]) -> bool:
    """A stopping agent's answer (`sidecar.agent.server.STOPPING`): the request was not run."""
    return reply.get("ok") is False and reply.get("stopping") is True


# Set by the agent on itself (`sidecar.agent.server`): a request a service makes from inside
# the agent (a hosted language server's `sync.start`, `forwards.host`…) is handled there
# directly, `await in_process(payload, progress)`, not over the agent's own socket.
in_process: Callable[[dict[str, Any], Callable[[Any], None] | None], Any] | None = None


class AgentPaths:
    """Where the agent of one `$ORCH_HOME` keeps its lock, state, socket and log."""

    def __init__(self, home: Path) -> None:
        self.folder = home / "agent"
        self.socket = self.folder / "agent.sock"
        if len(str(self.socket)) > _MAX_SOCKET:  # a deep $ORCH_HOME: a short private folder
            import hashlib
            import tempfile

            digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
            short = Path(tempfile.gettempdir()) / f"orch-{os.getuid()}"
            self.socket = short / f"agent-{digest}.sock"

    @property
    def lock(self) -> Path:
        return self.folder / "agent.lock"

    @property
    def state(self) -> Path:
        return self.folder / "state.json"

    @property
    def wanted(self) -> Path:
        """What the agent must bring back after a crash: its syncs and forward owners."""
        return self.folder / "wanted.json"

    @property
    def log(self) -> Path:
        return self.folder / "agent.log"


def home_from_env() -> Path:
    """`$ORCH_HOME` as `sidecar.state.orch_home` reads it, without importing it."""
    raw = os.environ.get("ORCH_HOME") or os.path.join(os.path.expanduser("~"), ".orch")
    return Path(raw).absolute()


def agent_paths(layout: Layout | Path) -> AgentPaths:
    return AgentPaths(layout if isinstance(layout, Path) else layout.home)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _locked(path: Path) -> bool:
    """`state.is_locked`'s test, again here: `sidecar.state` imports asyncio, which the
    standard-library fast paths and the bridge must not load."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def version_key(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def enabled() -> bool:
    """`ORCH_NO_AGENT=1` keeps every long-lived thing in its own process, as before the agent."""
    return os.environ.get("ORCH_NO_AGENT") != "1"


def agent_pid(paths: AgentPaths) -> int | None:
    """The live agent's pid (None: none runs)."""
    raw = _read_json(paths.state)
    pid = raw.get("pid") if isinstance(raw, dict) else None
    return pid if isinstance(pid, int) and alive(paths) else None


async def acall(
    paths: AgentPaths,
    payload: dict[str, Any],
    *,
    timeout: float = REQUEST_TIMEOUT_S,
    progress: Callable[[Any], None] | None = None,
    resend: bool = False,
) -> dict[str, Any]:
    """`call` from async code: in a thread, progress delivered on the caller's loop; an
    error reply raised as the OrchError class the agent named. `resend`: a request the agent
    did not run (`AgentDown`) is sent once more, to the next agent (`ensure`)."""
    import asyncio

    if in_process is not None:
        async with asyncio.timeout(timeout):
            return dict(await in_process(payload, progress))
    loop = asyncio.get_running_loop()
    relay = None
    if progress is not None:
        callback = progress

        def relay(value: Any) -> None:
            loop.call_soon_threadsafe(callback, value)

    try:
        reply = await asyncio.to_thread(call, paths, payload, timeout=timeout, progress=relay)
    except AgentDown:  # not run (none answered, or it was stopping): once more, to the next
        if not resend:
            raise
        await asyncio.to_thread(ensure, paths.folder.parent)
        reply = await asyncio.to_thread(call, paths, payload, timeout=timeout, progress=relay)
    raise_reply(reply)
    return reply


def raise_reply(reply: dict[str, Any]) -> None:
    """An error reply of the agent raised as the OrchError class it named (same message,
    hint, action and target); any other reply is left alone."""
    if reply.get("ok"):
        return
    from sidecar import errors

    kind = getattr(errors, str(reply.get("kind")), errors.OrchError)
    if not (isinstance(kind, type) and issubclass(kind, errors.OrchError)):
        kind = errors.OrchError
    exc = kind(str(reply.get("message")), hint=reply.get("hint"))
    exc.action, exc.target = reply.get("action"), reply.get("target")
    if isinstance(exc, errors.ConfigFileError) and isinstance(reply.get("problems"), list):
        exc.problems = _problems(reply["problems"])
    raise exc


def _problems(raw: list[Any]) -> list[Any]:
    """orch.toml's problems as the agent sent them, back as `ConfigProblem`s."""
    from remote_config.loader import ConfigProblem

    problems = []
    for item in raw:
        if isinstance(item, dict):
            try:
                problems.append(ConfigProblem(**item))
            except TypeError:  # a newer agent's field: keep what is readable
                continue
    return problems


def alive(paths: AgentPaths) -> bool:
    return _locked(paths.lock)


def wanted(paths: AgentPaths) -> bool:
    """Whether a dead agent left work to bring back (syncs, forwards)."""
    raw = _read_json(paths.wanted)
    return isinstance(raw, dict) and bool(raw.get("syncs") or raw.get("forwards"))


def call(
    paths: AgentPaths,
    payload: dict[str, Any],
    *,
    timeout: float = REQUEST_TIMEOUT_S,
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """One request; the final reply (`ok` true), or AgentUnavailable / the agent's error."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(str(paths.socket))
        except (OSError, TimeoutError) as exc:
            raise AgentDown(f"the orch agent is not answering on {paths.socket} ({exc})") from None
        try:
            sock.settimeout(STALL_S)
            sock.sendall((json.dumps(payload) + "\n").encode())
        except TimeoutError:
            raise AgentUnavailable(wedged(paths)) from None
        except OSError as exc:  # closed before the request: it cannot have read it
            raise AgentDown(f"the orch agent went away before the request ({exc})") from None
        deadline = time.monotonic() + timeout
        buffer = b""
        stall = Stall(paths)
        while True:
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                reply = json.loads(line)
                if "progress" in reply and "ok" not in reply:
                    if progress is not None:
                        progress(reply["progress"])
                    continue
                if stopping(reply):
                    raise AgentDown(str(reply.get("message")))
                return dict(reply)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentUnavailable(
                    f"the orch agent did not answer {payload.get('op')!r} within {timeout:g} s",
                )
            sock.settimeout(min(left, STALL_CHECK_S))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                stall.check()
                continue
            except ConnectionResetError as exc:  # closed with the request unread: not run
                raise AgentDown(f"the orch agent went away before the request ({exc})") from None
            except OSError as exc:
                raise lost(f"dropped the connection ({exc})") from None
            if not chunk:
                raise lost("stopped without an answer")
            buffer += chunk
    finally:
        sock.close()


def hello(paths: AgentPaths, timeout: float = 2.0) -> dict[str, Any]:
    return call(
        paths, {"op": "hello", "version": __version__, "protocol": PROTOCOL}, timeout=timeout
    )


def spawn(layout: Layout | Path, paths: AgentPaths) -> None:
    """Start `python -m sidecar.agent serve` detached; returns once it answers (or raises)."""
    import subprocess

    paths.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["ORCH_HOME"] = str(layout if isinstance(layout, Path) else layout.home)
    env.setdefault("PYTHONMALLOC", "malloc")  # with agent.memory's trims: -4.7 MB RSS (issue 20)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.agent", "serve", "--detach"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # (its start report: "ok pid N", "busy…", "error…")
        env=env,
        text=True,
    )
    try:
        _, out = proc.communicate(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AgentUnavailable(f"the orch agent did not start (see {paths.log})") from None
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if not last.startswith(("ok", "busy")):
        raise AgentUnavailable(f"the orch agent failed to start: {last or '?'} (see {paths.log})")


def replace(layout: Layout | Path, paths: AgentPaths, timeout: float = STOP_WAIT_S) -> None:
    """Ask an older agent to hand over (it keeps `wanted.json`), wait until it is gone."""
    import contextlib

    with contextlib.suppress(AgentUnavailable):  # already going
        call(paths, {"op": "shutdown", "forget": False}, timeout=timeout)
    deadline = time.monotonic() + timeout
    while alive(paths):
        if time.monotonic() > deadline:
            raise AgentUnavailable(f"the old orch agent did not stop (see {paths.log})")
        time.sleep(0.02)


def ensure(layout: Layout | Path | None = None) -> tuple[AgentPaths, dict[str, Any]]:
    """The running agent (started, or an older one replaced, when needed) and its hello; a
    stopping one (its state says so) is waited out, up to `STOP_WAIT_S`, and a new one
    started. `layout` may be `$ORCH_HOME` itself (the bridge: no `sidecar.layout`, which imports
    asyncio)."""
    if layout is None:
        from sidecar.layout import Layout

        layout = Layout.from_env()
    paths = agent_paths(layout)
    if in_process is not None:  # asked from inside the agent: it is this process
        return paths, {"ok": True, "version": __version__, "pid": os.getpid()}
    tries = 0  # starts, replacements and silent answers: three at most
    deadline = time.monotonic() + STOP_WAIT_S
    while tries < 3:
        if alive(paths):
            try:
                info = hello(paths)
            except AgentDown:  # stopping (it said so): wait until it is gone; else starting
                raw = _read_json(paths.state)
                if not (isinstance(raw, dict) and raw.get("stopping")):
                    tries += 1
                    time.sleep(0.1)
                elif time.monotonic() > deadline:
                    break
                else:
                    time.sleep(0.05)
                continue
            except AgentUnavailable:
                pid = stopped_pid(paths)
                if pid is not None:  # SIGSTOP, Ctrl-Z: asking again will not help
                    raise AgentUnavailable(
                        f"the orch agent (pid {pid}) is stopped (SIGSTOP, Ctrl-Z): resume it "
                        f"with `kill -CONT {pid}`, or end it with `kill {pid}`"
                    ) from None
                tries += 1
                time.sleep(0.1)
                continue
            if version_key(str(info.get("version"))) < version_key(__version__):
                tries += 1
                replace(layout, paths)
                continue
            return paths, info
        tries += 1
        spawn(layout, paths)
    raise AgentUnavailable(f"could not reach the orch agent (see {paths.log})")


def revive_if_wanted(layout: Layout) -> bool:
    """A dead agent with work to bring back is started again (it resumes its syncs and
    forwards); True when it was. Cheap when nothing is wanted (a stat and a lock probe)."""
    paths = agent_paths(layout)
    if alive(paths) or not wanted(paths):
        return False
    ensure(layout)
    return True
