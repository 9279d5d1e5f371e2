"""Pure parts of file sync: ignore rules, change planning, rsync argv, the remote helper.

Nothing here touches the disk or the network. The sidecar (`sidecar/sync/`) walks the tree,
hashes files and talks to the remote; this module decides *what* to do:

- `IgnoreRules`: gitignore semantics (via `pathspec`) for orch's defaults, `orch.toml`
  `[sync] exclude`, and every `.gitignore` / `.orchignore` in the tree (deeper files win).
- `plan_changes`: compare the local state of some paths with the manifest (what orch last
  wrote to the remote) and produce puts, deletes, renames (content-matched) and mkdirs.
- `choose_transport`: the small-batch path (the remote helper over the open asyncssh
  connection) or the large-batch path (`rsync --files-from` through ControlMaster).
- `rsync_argv`, `remote_rsync_path` (in `rsync_cmd.py`, re-exported here): the rsync command
  line and reading rsync's report back.
- `HELPER_SOURCE` (in `sync_helper.py`, re-exported here): the remote helper (python3 on the
  remote, stdlib only) that applies a batch atomically per file (temp name + rename) and
  refuses to overwrite what changed there.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from remote_config.rsync_cmd import RSYNC_OUT_PREFIX as RSYNC_OUT_PREFIX
from remote_config.rsync_cmd import parse_rsync_progress as parse_rsync_progress
from remote_config.rsync_cmd import parse_rsync_sent as parse_rsync_sent
from remote_config.rsync_cmd import remote_rsync_path as remote_rsync_path
from remote_config.rsync_cmd import rsync_argv as rsync_argv
from remote_config.sync_helper import HELPER_SOURCE as HELPER_SOURCE
from remote_config.sync_helper import helper_command as helper_command

if TYPE_CHECKING:
    import pathspec


DEFAULT_EXCLUDES: tuple[str, ...] = (".git/", "node_modules/", "__pycache__/", ".venv/", "data/")
# orch's own files are never synced, whatever the user's rules say.
ALWAYS_EXCLUDES: tuple[str, ...] = ("/.orch/", "*.orch-conflict-*", ".*.orch-tmp")
IGNORE_FILES: tuple[str, ...] = (".gitignore", ".orchignore")
CONFLICT_MARK = ".orch-conflict-"

# Crossover between the helper (one round trip, bytes through asyncssh) and rsync
# (--files-from through ControlMaster, ~60-80 ms fixed cost but faster bulk transfer and delta
# encoding). Chosen from bench/sync_latency.py's batch runs; see docs/sync.md.
SMALL_BATCH_MAX_FILES = 300
SMALL_BATCH_MAX_BYTES = 8 * 1024 * 1024
SMALL_FILE_MAX_BYTES = 4 * 1024 * 1024


# -- ignore rules -----------------------------------------------------------------------------
def _spec(lines: Iterable[str]) -> pathspec.PathSpec:
    import pathspec  # only where rules are built: `orch status` reads sync state without it

    return pathspec.GitIgnoreSpec.from_lines(list(lines))


@dataclass(frozen=True)
class IgnoreRules:
    """Which paths (relative, '/'-separated) the sync leaves alone.

    `root` holds orch's defaults, `orch.toml` excludes and the top-level ignore files;
    `nested` maps a folder to the spec built from its own ignore files, whose patterns are
    relative to that folder. As in git, the deepest file with a matching rule decides.
    """

    root: pathspec.PathSpec
    nested: Mapping[str, pathspec.PathSpec] = field(default_factory=dict)
    always: pathspec.PathSpec = field(default_factory=lambda: _spec(ALWAYS_EXCLUDES))
    # One regex per spec matching wherever any of its patterns does: a path it misses (most
    # paths) is decided by no pattern, without asking each pattern (the walk of 20,000 files).
    _any: dict[int, re.Pattern[str] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _none_match(self, spec: pathspec.PathSpec, probe: str) -> bool:
        key = id(spec)
        if key not in self._any:
            self._any[key] = _any_of(spec)
        quick = self._any[key]
        return quick is not None and quick.search(probe) is None

    @classmethod
    def build(
        cls,
        *,
        default_excludes: bool = True,
        exclude: Iterable[str] = (),
        ignore_files: Mapping[str, str] | None = None,
    ) -> IgnoreRules:
        """`ignore_files` maps a folder ('' for the top) to the text of its ignore files."""
        files = dict(ignore_files or {})
        top = [*(DEFAULT_EXCLUDES if default_excludes else ()), *exclude, files.pop("", "")]
        lines = [line for chunk in top for line in chunk.splitlines()] if top else []
        nested = {d.strip("/"): _spec(t.splitlines()) for d, t in files.items() if t.strip()}
        return cls(_spec(lines), nested)

    def ignored(self, rel: str, is_dir: bool = False) -> bool:
        """Whether `rel` itself is ignored (its folders are assumed not to be)."""
        probe = rel + "/" if is_dir else rel
        if not self._none_match(self.always, probe) and self.always.match_file(probe):
            return True
        decision = None
        if not self._none_match(self.root, probe):
            decision = self.root.check_file(probe).include
        if self.nested:
            folder = posixpath.dirname(rel)
            chain = []
            while folder:
                chain.append(folder)
                folder = posixpath.dirname(folder)
            for base in reversed(chain):
                spec = self.nested.get(base)
                if spec is not None and not self._none_match(spec, probe[len(base) + 1 :]):
                    verdict = spec.check_file(probe[len(base) + 1 :]).include
                    if verdict is not None:
                        decision = verdict
        return bool(decision)

    def ignored_path(self, rel: str, is_dir: bool = False) -> bool:
        """Whether `rel` or any folder above it is ignored (for paths seen in events)."""
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if self.ignored("/".join(parts[:i]), is_dir=True):
                return True
        return self.ignored(rel, is_dir)


def _any_of(spec: pathspec.PathSpec) -> re.Pattern[str] | None:
    """The union of a spec's pattern regexes (None: not built, ask each pattern)."""
    regexes = [p.regex for p in spec.patterns if p.include is not None and p.regex is not None]
    if not regexes:
        return re.compile(r"(?!)")  # no pattern: nothing matches
    if any(r.flags != regexes[0].flags or not isinstance(r.pattern, str) for r in regexes):
        return None
    # pathspec names a group in each regex (the folder mark); in the union they are plain.
    parts = [re.sub(r"\(\?P<[A-Za-z_0-9]+>", "(?:", r.pattern) for r in regexes]
    try:
        return re.compile("|".join(f"(?:{p})" for p in parts), regexes[0].flags)
    except re.error:
        return None


def is_ignore_file(rel: str) -> bool:
    return posixpath.basename(rel) in IGNORE_FILES


# -- planning ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalFile:
    """A local file as the sync sees it: its content hash and the metadata it carries."""

    size: int
    mtime_ns: int
    mode: int
    hash: str


@dataclass(frozen=True)
class Entry:
    """What orch last wrote to the remote for a path (the manifest)."""

    size: int
    mtime_ns: int
    mode: int
    hash: str | None  # None: written while the local file changed, content unknown
    # The remote file's inode and ctime after orch wrote it: unlike size and mtime, no tool
    # can set them, so an edit there that restores size and mtime is still noticed.
    ino: int | None = None
    ctime_ns: int | None = None

    def expect(self) -> list[object]:
        """The form the remote helper compares against: [size, mtime_ns, hash, ino, ctime_ns]."""
        return [self.size, self.mtime_ns, self.hash, self.ino, self.ctime_ns]

    @classmethod
    def written(cls, stat: list[int], mode: int, digest: str | None) -> Entry:
        """The entry for a file the helper reported as `stat` ([size, mtime, ino, ctime])."""
        ino, ctime = (stat[2], stat[3]) if len(stat) >= 4 else (None, None)
        return cls(stat[0], stat[1], mode, digest, ino, ctime)


@dataclass
class Plan:
    puts: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    moves: list[tuple[str, str]] = field(default_factory=list)  # (src, dst)
    mkdirs: list[str] = field(default_factory=list)
    rmdirs: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.puts or self.deletes or self.moves or self.mkdirs or self.rmdirs)

    @property
    def count(self) -> int:
        return len(self.puts) + len(self.deletes) + len(self.moves) + len(self.mkdirs)


def plan_changes(
    local: Mapping[str, LocalFile | None],
    manifest: Mapping[str, Entry],
    *,
    new_dirs: Iterable[str] = (),
    gone_dirs: Iterable[str] = (),
) -> Plan:
    """What to do so the remote matches `local` for the paths given.

    `local` maps each candidate file to its state (None: no longer there locally). A file is
    put when its content or mode differs from the manifest; a file gone locally but in the
    manifest is deleted. A put whose content equals a deleted file's becomes a rename, so
    moving a large file or folder costs no transfer. Content, not mtime, decides.
    """
    plan = Plan()
    for path in sorted(local):
        state, known = local[path], manifest.get(path)
        if state is None:
            if known is not None:
                plan.deletes.append(path)
        elif known is None or known.hash != state.hash or known.mode != state.mode:
            plan.puts.append(path)
    _pair_renames(plan, local, manifest)
    plan.mkdirs = sorted(set(new_dirs))
    plan.rmdirs = sorted(set(gone_dirs), key=lambda d: (-d.count("/"), d))
    return plan


def _pair_renames(
    plan: Plan, local: Mapping[str, LocalFile | None], manifest: Mapping[str, Entry]
) -> None:
    by_hash: dict[tuple[str, int], list[str]] = {}
    for path in plan.deletes:
        entry = manifest[path]
        if entry.hash is not None:
            by_hash.setdefault((entry.hash, entry.mode), []).append(path)
    if not by_hash:
        return
    puts = []
    for path in plan.puts:
        state = local[path]
        assert state is not None
        sources = by_hash.get((state.hash, state.mode))
        if sources and path not in manifest:
            src = sources.pop(0)
            plan.moves.append((src, path))
            plan.deletes.remove(src)
        else:
            puts.append(path)
    plan.puts = puts


Transport = Literal["helper", "rsync"]


def choose_transport(sizes: Iterable[int]) -> Transport:
    """The helper for small batches (one round trip), rsync for large ones."""
    sizes = list(sizes)
    if len(sizes) > SMALL_BATCH_MAX_FILES or sum(sizes) > SMALL_BATCH_MAX_BYTES:
        return "rsync"
    if any(size > SMALL_FILE_MAX_BYTES for size in sizes):
        return "rsync"
    return "helper"


def gone_parents(paths: Iterable[str], exists: Mapping[str, bool]) -> list[str]:
    """Folders above deleted paths that no longer exist locally (to remove if empty)."""
    out: set[str] = set()
    for path in paths:
        folder = posixpath.dirname(path)
        while folder and not exists.get(folder, True):
            out.add(folder)
            folder = posixpath.dirname(folder)
    return sorted(out)


# -- conflicts --------------------------------------------------------------------------------
def conflict_suffix(stamp: str) -> str:
    """The suffix for a remote file moved aside on a conflict: `.orch-conflict-<UTC stamp>`."""
    return f"{CONFLICT_MARK}{stamp}"


def conflict_name(path: str, stamp: str, attempt: int = 0) -> str:
    name = f"{path}{conflict_suffix(stamp)}"
    return name if attempt == 0 else f"{name}-{attempt}"


# -- the remote helper: remote_config/sync_helper.py ------------------------------------------
SNAPSHOTS_KEPT = 3  # besides the one being used and those running jobs use


def snapshot_command(remote_dir: str, snapshots_dir: str, expect: str | None) -> str:
    """A remote sh command making `<snapshots_dir>/<token>`, a hard-linked copy.

    `<remote_dir>/.orch/generation` holds the sync token of the tree there
    (`<sync id>-<generation>`: the sync id is random per laptop-side sync state, so a lost
    state, another laptop or another project folder of the same name never shares one). The
    copy is made only when that token is `expect`, the one this laptop's sync recorded last:
    exit 3 when the folder was never synced, 4 when it holds another tree (another sync, an
    unfinished batch: a token ending in "~") and prints the token found on stderr.

    It holds the sync lock (`<remote_dir>/.orch/lock`, taken by the helper for every batch)
    so the copy is one whole generation. Hard links copy no data, and orch always replaces
    files by rename (never in place), so later syncs give the live tree new inodes and leave
    the snapshot as it was. Made under a temp name and renamed: complete or absent. A token
    already snapshotted is reused. Older snapshots are pruned: the newest SNAPSHOTS_KEPT and
    any a running job uses (named in its run.sh) stay. Prints "<token> <absolute path>".
    """
    root, snaps = _shell_path(remote_dir), _shell_path(snapshots_dir)
    want = shlex.quote(expect or "")
    return (
        f'set -e; r={root}; s={snaps}; want={want}; mkdir -p "$r/.orch" "$s"; '
        'exec 9>>"$r/.orch/lock"; flock 9; '
        '[ -f "$r/.orch/generation" ] || exit 3; '
        'g=$(cat "$r/.orch/generation"); '
        'if [ -z "$want" ] || [ "$g" != "$want" ]; then echo "$g" >&2; exit 4; fi; '
        'd="$s/$g"; '
        'if [ ! -d "$d" ]; then t="$d.tmp.$$"; rm -rf "$t"; cp -al "$r" "$t"; '
        'mv -T "$t" "$d"; fi; '
        f'cd "$s"; n=0; for x in $(ls -1t); do [ -d "$x" ] && [ "$x" != "$g" ] || continue; '
        'case $x in *.tmp.*) [ -n "$(find "$x" -maxdepth 0 -mmin +60)" ] || continue;; '
        f'*) n=$((n + 1)); [ "$n" -gt {SNAPSHOTS_KEPT} ] || continue;; esac; '
        'busy=; for j in "$HOME"/logs/*/; do '
        '[ -f "$j/meta" ] && [ ! -f "$j/result" ] || continue; '
        'if grep -qF "/$x" "$j/run.sh" 2>/dev/null; then busy=1; fi; done; '
        '[ -n "$busy" ] || rm -rf "$x" || true; done; '
        'cd "$d"; echo "$g $(pwd)"'
    )


def _shell_path(path: str) -> str:
    """Quote a remote path for sh, keeping a leading '~/' expandable as "$HOME"."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)
