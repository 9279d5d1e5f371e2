"""Pure parts of orch's rsync runs: the command line (one comment per option), the filter
rules of a first copy, and reading rsync's per-file report back.

Two forms (`rsync_argv`):

- An exact list (`--files-from`): the batches of the sync, which send the paths orch planned.
- A root transfer (`-r` with `--exclude-from`): the first copy of a tree. rsync walks the tree
  itself with incremental recursion, which costs its sender less than half the CPU of the same
  copy by list (20,000 small files: 0.26 s against 0.48 s, measured for issue 12 item 11;
  docs/performance.md). The filter rules come from orch's own walk (`rsync_excludes`): each
  entry the walk left out, so rsync sends what orch's ignore rules keep and nothing else.

Nothing here touches the disk or the network.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
from collections.abc import Iterable

RSYNC_OUT_PREFIX = "orch-sent"

# Above this many rules a root transfer loses what it gains: rsync tries every rule on every
# path (1,000 rules cost its sender ~0.15 s more on 20,000 files), so the list form is used.
MAX_EXCLUDE_RULES = 300


def remote_rsync_path(remote_dir: str) -> str:
    """rsync's remote path: '~/x' becomes 'x' (rsync's remote side starts in the home)."""
    if remote_dir == "~":
        return "."
    return remote_dir[2:] if remote_dir.startswith("~/") else remote_dir


def rsync_argv(
    ssh_config: str,
    alias: str,
    local_dir: str,
    remote_dir: str,
    files_from: str | None,
    *,
    exclude_from: str | None = None,
    progress: bool = False,
    compress: bool = False,
) -> list[str]:
    """rsync of the files listed (NUL-separated) in `files_from`, or with `files_from` None
    of the whole tree less the rules (NUL-separated) in `exclude_from`, through the managed
    config."""
    # NUL-separated list or rules: any file name is safe, newlines included (before the
    # rules file: rsync reads that as it parses its options).
    if files_from is not None:
        # Symlinks as symlinks, permissions, times, devices; no recursion: the list is exact.
        # A listed folder is created (an empty one too) without recursing into it.
        argv = ["rsync", "-lptD", "--dirs", "--from0", f"--files-from={files_from}"]
    else:
        # The whole tree (empty folders too), rsync walking it as it sends; what orch's ignore
        # rules leave out is excluded by the rules file.
        argv = ["rsync", "-rlptD", "--from0"]
        if exclude_from is not None:
            argv.append(f"--exclude-from={exclude_from}")
    argv += [
        # orch decided by content which files differ; rsync must not skip by size+mtime.
        "--ignore-times",
        # Each file goes to a temp name and is renamed into place: never seen half-written.
        "--no-inplace",
        # No group/owner games on the remote; the remote user owns what orch writes.
        "--no-owner",
        "--no-group",
        # rsync's whole-file checksum of what it actually sent, printed per file: the
        # manifest records exactly the remote's content without reading the files twice.
        "--checksum-choice=md5",
        # A symlink's line ends " -> TARGET" (%L): what it sent, without a look afterwards.
        f"--out-format={RSYNC_OUT_PREFIX} %C %n%L",
        # The managed config: pinned host key, ControlMaster (no new handshake per call).
        "-e",
        f"ssh -F {shlex.quote(ssh_config)}",
    ]
    if compress:
        argv.append("-z")  # worth it on slow links only; loopback and LANs lose time to it
    if progress:
        argv.append("--info=progress2")  # one line of overall progress for the bar
    argv += [local_dir.rstrip("/") + "/", f"{alias}:{remote_rsync_path(remote_dir)}/"]
    return argv


def rsync_excludes(
    kept: Iterable[str], ignored: Iterable[tuple[str, bool]], limit: int = MAX_EXCLUDE_RULES
) -> list[str] | None:
    """rsync filter rules leaving out exactly the `ignored` entries (path, is a folder) of a
    walk that kept `kept` (files and folders); None when more than `limit` rules are needed.

    A name ignored wherever the walk met it and kept nowhere is one unanchored rule (every
    `__pycache__`, every `.DS_Store`: also those made after the walk); any other ignored entry
    is its own rule anchored at the root. An ignored folder's rule also leaves out all below.
    """
    by_name: dict[str, list[tuple[str, bool]]] = {}
    for path, is_dir in ignored:
        by_name.setdefault(posixpath.basename(path), []).append((path, is_dir))
    if not by_name:  # nothing ignored: no rules (and no pass over every kept path)
        return []
    kept_names = {posixpath.basename(p) for p in kept}
    rules: list[str] = []
    for name, entries in sorted(by_name.items()):
        if name not in kept_names:
            only_dirs = all(is_dir for _, is_dir in entries)
            rules.append("- " + _literal(name) + ("/" if only_dirs else ""))
        else:
            rules += ["- /" + _literal(p) + ("/" if d else "") for p, d in sorted(entries)]
        if len(rules) > limit:
            return None
    return rules


_WILD = re.compile(r"[*?\[]")


def _literal(path: str) -> str:
    """A filter pattern matching `path` literally: rsync reads backslash escapes only in a
    pattern holding a wildcard character, so escape everything once one is there."""
    if not _WILD.search(path):
        return path
    return re.sub(r"([*?\[\\])", r"\\\1", path)


_ESCAPED = re.compile(rb"\\#([0-7]{3})")


def unescape_name(text: str) -> str:
    r"""A name as rsync printed it, back to the real name: rsync writes each byte it will not
    print as `\#ooo` (octal; a newline, non-UTF-8 or, in the C locale, any non-ASCII byte) and
    a backslash that precedes '#' as `\#134`."""
    if "\\#" not in text:
        return text
    raw = text.encode(errors="surrogateescape")
    raw = _ESCAPED.sub(lambda m: bytes([int(m.group(1), 8)]), raw)
    return raw.decode(errors="surrogateescape")


def parse_rsync_sent(line: str) -> tuple[str, str] | None:
    """(path, md5) from an `--out-format` line: rsync's checksum of a regular file, or for a
    symlink the md5 of b"link:" + its target (as orch hashes symlinks). None for other lines,
    folders, and a symlink line that cannot be read back exactly (" -> " in its name or
    target)."""
    if not line.startswith(RSYNC_OUT_PREFIX + " "):
        return None
    rest = line[len(RSYNC_OUT_PREFIX) + 1 :]
    digest, _, name = rest.partition(" ")
    if digest:
        if len(digest) != 32 or name.endswith("/"):
            return None
        return unescape_name(name), digest
    if rest[:33] != " " * 33:  # no checksum: %C gives 32 spaces
        return None
    link, arrow, target = rest[33:].partition(" -> ")
    if not arrow or " -> " in target or link.endswith("/"):
        return None
    data = b"link:" + unescape_name(target).encode(errors="surrogateescape")
    return unescape_name(link), hashlib.md5(data, usedforsecurity=False).hexdigest()


def parse_rsync_dir(line: str) -> str | None:
    """The folder an `--out-format` line reports (made or updated there), or None ('.' too)."""
    if not line.startswith(RSYNC_OUT_PREFIX + " ") or not line.endswith("/"):
        return None
    rest = line[len(RSYNC_OUT_PREFIX) + 1 :]
    if rest[:33] != " " * 33:
        return None
    name = unescape_name(rest[33:-1])
    return None if name in ("", ".") else name


def parse_rsync_progress(line: str) -> int | None:
    """The percentage in an `--info=progress2` line ('  1,234  45%  1.2MB/s ...'), or None."""
    for token in line.split():
        if token.endswith("%") and token[:-1].isdigit():
            return int(token[:-1])
    return None
