"""Pure parts of `orch debug`: turning a job's command into one run under debugpy, and
reading the listening port back from a job's command line."""

from __future__ import annotations

import posixpath
import re
import shlex

_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")
_LISTEN = re.compile(r"-m debugpy --listen 127\.0\.0\.1:(\d+) ")


def debugpy_argv(argv: list[str], python: str, port: int) -> list[str]:
    """`python script.py ARGS` → `python -m debugpy --listen … --wait-for-client script.py ARGS`.

    A command that does not start with a Python interpreter runs under `python` (from
    `[debug] python`): `script.py ARGS` and `-m pkg ARGS` both work. debugpy listens on the
    remote's loopback only; orch forwards a local port to it.
    """
    if not argv:
        raise ValueError("orch debug needs a command: orch debug NAME -- python script.py ARGS")
    head, rest = argv[0], argv[1:]
    if _PYTHON.match(posixpath.basename(head)):
        interpreter = head
    else:
        interpreter, rest = python, argv
    if rest[:2] == ["-m", "debugpy"]:
        raise ValueError("the command already runs debugpy; give the plain command instead")
    listen = ["-m", "debugpy", "--listen", f"127.0.0.1:{port}", "--wait-for-client"]
    return [interpreter, *listen, *rest]


def listening_port(command: str) -> int | None:
    """The debugpy port of a job started by `orch debug` (from its recorded command line)."""
    match = _LISTEN.search(command + " ")
    return int(match.group(1)) if match else None


def expand_home(path: str, home: str) -> str:
    if path == "~":
        return home
    if path.startswith("~/"):
        return posixpath.join(home, path[2:])
    return path


FREE_PORT_SNIPPET = (
    "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
)


def free_port_command(python: str) -> str:
    """A remote command printing a free TCP port on the remote's loopback."""
    return f"{shlex.quote(python)} -c {shlex.quote(FREE_PORT_SNIPPET)}"
