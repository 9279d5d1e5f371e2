"""Local TCP ports: bind one exactly (never another), or say which process holds it.

The holder is found the way `ss -ltnp` does it, without needing `ss`: the listening sockets
in /proc/net/tcp{,6} give an inode, and the process whose /proc/PID/fd links to
`socket:[inode]` holds it. Processes of other users are invisible to a non-root user; the
message then says so instead of guessing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from sidecar.errors import PortBusy

_LISTEN = "0A"


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} ({self.command})"


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) < 10 or fields[3] != _LISTEN:
                    continue
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    text = " ".join(words) or "?"
    return text if len(text) <= 120 else text[:117] + "..."


def port_holders(port: int) -> list[Holder]:
    """The processes listening on TCP `port` (any address) that this user can see."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return []
    found: list[Holder] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) in wanted:
                        found.append(Holder(int(entry.name), _command(int(entry.name))))
                        break
    return sorted(found, key=lambda h: h.pid)


def busy_error(port: int, address: str = "127.0.0.1") -> PortBusy:
    holders = port_holders(port)
    if holders:
        who = ", ".join(h.describe() for h in holders)
        hint = f"stop it (kill {holders[0].pid}) or forward another local port"
    else:
        who = "a process this user cannot see (another user's, or a closing socket)"
        hint = f"see `ss -ltnp 'sport = :{port}'` as root, or forward another local port"
    return PortBusy(f"local port {address}:{port} is already in use by {who}", hint=hint)


def bind_exact(port: int, address: str = "127.0.0.1") -> socket.socket:
    """A listening socket on exactly `address:port`; PortBusy (naming the holder) if taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Lets a restarted forwarder re-bind while old connections sit in TIME_WAIT; it does
        # not let two listeners share the port (that would need SO_REUSEPORT).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise busy_error(port, address) from None
        raise PortBusy(f"cannot listen on {address}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock
