"""Pure edits of the user's `~/.ssh/config`: orch's one `Include` line, and who overrides orch.

orch never rewrites the user's file; it owns exactly one line, `Include <managed config>`, kept
as the very first line (VS Code's Remote Explorer only follows an Include there, and OpenSSH
takes the first value it sees, so orch's Host blocks win over a later `Host *`). These functions
work on bytes so that everything outside orch's line (CRLF endings, a missing final newline,
odd encodings) is returned untouched. `find_overrides` explains a difference reported by
`ssh -G` by pointing at the user's line (1-based) that set the value.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from remote_config.ssh_config import quote_value

# Options orch sets in its Host blocks (lower case, as `ssh -G` prints them).
ORCH_OPTIONS = (
    "hostname",
    "port",
    "user",
    "identityfile",
    "identitiesonly",
    "userknownhostsfile",
    "stricthostkeychecking",
    "hostkeyalias",
    "checkhostip",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "serveraliveinterval",
    "serveralivecountmax",
    "tcpkeepalive",
    "batchmode",
    "compression",
    "localforward",
)


def include_line(managed_path: str) -> bytes:
    """The one line orch owns in the user's config (without its line ending)."""
    return f"Include {quote_value(managed_path)}".encode()


def _is_ours(line: bytes, include: bytes) -> bool:
    return line.rstrip(b"\r\n").strip(b" \t") == include


def _eol(lines: list[bytes]) -> bytes:
    """The line ending the file already uses (CRLF if its first line has one)."""
    for line in lines:
        if line.endswith(b"\r\n"):
            return b"\r\n"
        if line.endswith(b"\n"):
            return b"\n"
    return b"\n"


def has_include(data: bytes | None, include: bytes) -> bool:
    return bool(data) and any(_is_ours(line, include) for line in (data or b"").splitlines())


def include_at_top(data: bytes | None, include: bytes) -> bool:
    lines = (data or b"").splitlines()
    return bool(lines) and _is_ours(lines[0], include)


def add_include(data: bytes | None, include: bytes) -> bytes:
    """`data` with orch's line first and nowhere else; the other bytes are kept exactly.

    Idempotent: a file that already starts with the line (and has no second copy) is
    returned unchanged, byte for byte.
    """
    lines = (data or b"").splitlines(keepends=True)
    ours = [i for i, line in enumerate(lines) if _is_ours(line, include)]
    if ours == [0]:
        return data or b""
    rest = [line for line in lines if not _is_ours(line, include)]
    return include + _eol(lines) + b"".join(rest)


def remove_include(data: bytes | None, include: bytes) -> bytes:
    """`data` without orch's line (wherever it is); the other bytes are kept exactly."""
    lines = (data or b"").splitlines(keepends=True)
    return b"".join(line for line in lines if not _is_ours(line, include))


# -- explaining overrides -----------------------------------------------------------------------


@dataclass(frozen=True)
class Override:
    """A user setting that changes what orch configured for a host."""

    keyword: str
    wanted: str  # what orch's file alone gives ('' when orch sets nothing)
    effective: str  # what `ssh -G` reports with the user's file
    line: int | None  # 1-based line in the user's file, None when set in a file it includes
    text: str  # that line, stripped

    def message(self, path: str) -> str:
        where = f"{path}:{self.line}" if self.line else f"a file included by {path}"
        return (
            f"{where}: {self.text or self.keyword} overrides orch's "
            f"{self.keyword} ({self.wanted or 'unset'} -> {self.effective or 'unset'})"
        )


def parse_ssh_g(output: str) -> dict[str, list[str]]:
    """`ssh -G` output as keyword -> values (several for LocalForward, IdentityFile…)."""
    values: dict[str, list[str]] = {}
    for raw in output.splitlines():
        key, _, value = raw.strip().partition(" ")
        if key:
            values.setdefault(key.lower(), []).append(value.strip())
    return values


_KEYWORD = re.compile(r"^\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*?)\s*$")


def _host_matches(patterns: list[str], alias: str) -> bool:
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if fnmatch.fnmatchcase(alias, pattern.lstrip("!")):
            if negated:
                return False
            matched = True
    return matched


def _applicable_lines(text: str, alias: str, include: bytes) -> list[tuple[int, str, str]]:
    """(line number, keyword, line) for settings that may apply to `alias`.

    `Match` blocks are treated as applying (their criteria need the live environment), so a
    warning may name a Match block that did not fire, never miss one that did.
    """
    out: list[tuple[int, str, str]] = []
    active = True
    for number, line in enumerate(text.splitlines(), start=1):
        if _is_ours(line.encode(errors="replace"), include):
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _KEYWORD.match(stripped)
        if not match:
            continue
        keyword, args = match.group(1).lower(), match.group(2)
        if keyword == "host":
            active = _host_matches(args.replace('"', "").split(), alias)
        elif keyword == "match":
            active = True
        elif active:
            out.append((number, keyword, stripped))
    return out


def find_overrides(
    user_text: str,
    alias: str,
    wanted: dict[str, list[str]],
    effective: dict[str, list[str]],
    include: bytes,
) -> list[Override]:
    """Options orch sets whose effective value differs, each traced to the user's line."""
    lines = _applicable_lines(user_text, alias, include)
    found: list[Override] = []
    for keyword in ORCH_OPTIONS:
        want, got = wanted.get(keyword, []), effective.get(keyword, [])
        if want == got:
            continue
        source = next(((n, text) for n, key, text in lines if key == keyword), None)
        found.append(
            Override(
                keyword=keyword,
                wanted=", ".join(want),
                effective=", ".join(got),
                line=source[0] if source else None,
                text=source[1] if source else "",
            )
        )
    return found
