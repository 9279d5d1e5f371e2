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


PROBE_SNIPPET = """\
import os, socket, sys
sys.path.insert(0, os.path.expanduser(sys.argv[1]))
try:
    import debugpy
    version = debugpy.__version__
    where = os.path.dirname(os.path.dirname(os.path.abspath(debugpy.__file__)))
except ImportError:
    version, where = "-", "-"
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], version, where, os.path.expanduser("~"), sep="\\n")
"""


def probe_command(python: str, shipped_dir: str) -> str:
    """One remote round trip: a free loopback port, the debugpy version the interpreter can
    import (from its own site-packages or orch's shipped copy in `shipped_dir`) and where
    from, and the remote home. Prints four lines."""
    return f"{shlex.quote(python)} -c {shlex.quote(PROBE_SNIPPET)} {shlex.quote(shipped_dir)}"


def parse_probe(output: str) -> tuple[int, str | None, str | None, str]:
    port, version, where, home = output.strip().splitlines()[-4:]
    return int(port), (None if version == "-" else version), (None if where == "-" else where), home


USED_PORTS_COMMAND = "cat /proc/net/tcp /proc/net/tcp6 2>/dev/null"


def is_listening(proc_net_tcp: str, port: int) -> bool:
    """Whether a socket LISTENs on `port` (any address), per /proc/net/tcp{,6} text.

    Used to learn that debugpy accepts connections without connecting to it: debugpy's
    adapter serves one client, and a probe that connects and leaves can end its session.
    """
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        # sl local_address rem_address st ...; state 0A is TCP_LISTEN.
        if len(fields) > 3 and ":" in fields[1] and fields[3] == "0A":
            try:
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
            except ValueError:
                continue
    return False


def pick_free_port(proc_net_tcp: str, candidates: list[int]) -> int | None:
    """The first candidate port no socket uses, per the remote's /proc/net/tcp{,6} text."""
    used = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 1 and ":" in fields[1]:
            try:
                used.add(int(fields[1].rsplit(":", 1)[1], 16))
            except ValueError:
                continue
    return next((port for port in candidates if port not in used), None)
