"""Reading port numbers and port-forward specs typed by a user: one strict grammar, pure.

A port is written in plain decimal digits, 1 to 65535, without a sign or a leading zero
(`+80`, `08080`, `0`, `-1`, `65536` are refused, never guessed at). The CLI, the language
server and orch.toml all end up here or in the same bounds, so every front end reports the
same problem the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_PORT, MAX_PORT = 1, 65535
_DIGITS = re.compile(r"^[1-9][0-9]{0,4}$")
_HOST = re.compile(r"^[A-Za-z0-9_.-]+$")
SPEC_HELP = "LOCAL, LOCAL:REMOTE_PORT or LOCAL:REMOTE_HOST:REMOTE_PORT, each port 1-65535"
REVERSE_HELP = "LOCAL or LOCAL:REMOTE_PORT (the machine's REMOTE_PORT reaches this LOCAL port)"


class PortSyntaxError(ValueError):
    """A port or forward spec that is not valid; the message says what and how to write it."""


@dataclass(frozen=True)
class ForwardRequest:
    local_port: int
    remote_port: int | None
    remote_host: str


def check_port(value: object, what: str = "port") -> int:
    """`value` if it is an int port (1-65535; booleans are not ports), else PortSyntaxError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PortSyntaxError(f"{what} must be a whole number 1-65535, not {value!r}")
    if not MIN_PORT <= value <= MAX_PORT:
        raise PortSyntaxError(f"{what} {value} is out of range: use 1-65535")
    return value


def parse_port(text: str, what: str = "port") -> int:
    """A port written in plain digits: '8080' -> 8080; '0', '+80', '08080', '1e3' refused."""
    raw = text.strip()
    if not _DIGITS.match(raw):
        if raw.isdigit() and int(raw) == 0:
            raise PortSyntaxError(f"{what} 0 is not a port: use 1-65535")
        if raw.isdigit() and raw.startswith("0"):
            raise PortSyntaxError(f"{what} {text!r} has a leading zero: write it without")
        raise PortSyntaxError(f"{what} {text!r} is not a port number: use digits, 1-65535")
    return check_port(int(raw), what)


def check_host(host: str) -> str:
    if not host or not _HOST.match(host) or host.startswith("-"):
        raise PortSyntaxError(
            f"remote host {host!r} is not a host name or IPv4 address (letters, digits, '.-_')"
        )
    return host


def parse_forward(spec: str, *, reverse: bool = False) -> ForwardRequest:
    """LOCAL | LOCAL:REMOTE_PORT | LOCAL:REMOTE_HOST:REMOTE_PORT (the last not for reverse)."""
    parts = spec.split(":")
    if len(parts) == 1:
        return ForwardRequest(parse_port(parts[0], "local port"), None, "127.0.0.1")
    if len(parts) == 2:
        return ForwardRequest(
            parse_port(parts[0], "local port"), parse_port(parts[1], "remote port"), "127.0.0.1"
        )
    if len(parts) == 3 and not reverse:
        return ForwardRequest(
            parse_port(parts[0], "local port"),
            parse_port(parts[2], "remote port"),
            check_host(parts[1]),
        )
    raise PortSyntaxError(
        f"cannot read port forward {spec!r}: use {REVERSE_HELP if reverse else SPEC_HELP}"
    )
