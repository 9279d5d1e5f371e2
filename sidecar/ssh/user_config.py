"""The user's `~/.ssh/config`: installing and removing orch's one `Include` line, safely.

The file's location is `$ORCH_SSH_USER_CONFIG` or `~/.ssh/config`. A symlinked file is edited
through the link (its target changes, the link stays). Every change is atomic (temp file in
the target's folder, fsync, rename), keeps the file's mode and owner, is serialized by an
flock on the target's folder (the file itself is replaced, so it cannot carry the lock), is
checked with `ssh -G` before it replaces the old file, and never happens to a read-only file.
The first change ever keeps a copy of the original in `$ORCH_HOME/ssh/user-config.backup`.
The byte-level edit itself is pure: `remote_config/ssh_user_config.py`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from remote_config.ssh_user_config import (
    add_include,
    find_overrides,
    has_include,
    include_at_top,
    include_line,
    parse_ssh_g,
    remove_include,
)
from sidecar.errors import UserFileError
from sidecar.layout import Layout
from sidecar.state import atomic_write, clean_temp_files, write_json

ENV_VAR = "ORCH_SSH_USER_CONFIG"
VALIDATE_ALIAS = "orch-validate-only"


def user_config_path() -> Path:
    raw = os.environ.get(ENV_VAR)
    return Path(raw).expanduser().absolute() if raw else Path.home() / ".ssh" / "config"


@dataclass
class EditResult:
    path: Path  # the user's config as named (may be a symlink)
    target: Path  # the file actually written
    changed: bool
    created: bool = False
    backup: Path | None = None
    warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read(target: Path) -> tuple[bytes | None, os.stat_result | None]:
    try:
        with open(target, "rb") as handle:
            return handle.read(), os.fstat(handle.fileno())
    except FileNotFoundError:
        return None, None
    except IsADirectoryError:
        raise UserFileError(
            f"{target} is a folder, not a file; orch changed nothing",
            hint="OpenSSH reads its config from a file: move the folder away, or set "
            f"{ENV_VAR} to the file orch should add its Include line to",
        ) from None
    except PermissionError as exc:
        raise UserFileError(
            f"{target} cannot be read ({exc.strerror}); orch changed nothing",
            hint="fix its permissions (chmod 600) or set ORCH_SSH_USER_CONFIG to another file",
        ) from None


def _refuse_read_only(target: Path, st: os.stat_result, managed: Path) -> None:
    # Root may write anything, so the owner's write bit is what says "leave this alone"
    # (home-manager and similar tools make the file read-only on purpose).
    if st.st_mode & stat.S_IWUSR and os.access(target, os.W_OK):
        return
    raise UserFileError(
        f"{target} is read-only; orch changed nothing",
        hint="add this line at the very top yourself: "
        f"{include_line(str(managed)).decode()} (or make the file writable: chmod u+w)",
    )


def _ssh_g(config: Path, alias: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-G", "-F", str(config), alias],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )


def _write_checked(
    target: Path, data: bytes, st: os.stat_result | None, alias: str, warnings: list[str]
) -> None:
    """Replace `target` with `data` once `ssh -G` parses it; the old file is kept otherwise."""
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), dir=target.parent)
    try:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) if st else 0o600)
        if st is not None and os.geteuid() == 0 and st.st_uid != 0:
            os.fchown(fd, st.st_uid, st.st_gid)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        check = _ssh_g(Path(tmp), alias)
        if check.returncode != 0:
            before = _ssh_g(target, alias) if st is not None else check
            if st is None or before.returncode == 0:
                raise UserFileError(
                    f"ssh -G rejects {target} with orch's Include line; orch changed nothing: "
                    f"{check.stderr.strip()[-300:]}",
                    hint="report this as a bug in orch, with the file's first lines",
                )
            warnings.append(
                f"{target} did not parse before orch's change either: "
                f"{before.stderr.strip()[-300:]}"
            )
        if st is not None and st.st_nlink > 1:
            _write_in_place(target, data)  # replacing it would cut its other names off
            os.unlink(tmp)
            warnings.append(
                f"{target} has {st.st_nlink} hard links: orch wrote it in place so that "
                "every link keeps the same content"
            )
        else:
            os.replace(tmp, target)
            _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.orch-"


def _write_in_place(target: Path, data: bytes) -> None:
    """Rewrite a hard-linked file through its inode (checked already; the backup is kept)."""
    with open(target, "r+b") as handle:
        handle.write(data)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _backup_once(layout: Layout, path: Path, data: bytes | None) -> Path | None:
    """Keep the user's file as it was before orch first touched it (never overwritten)."""
    backup = layout.ssh_dir / "user-config.backup"
    record = layout.ssh_dir / "user-config.backup.json"
    if record.exists():
        return backup if backup.exists() else None
    if data is not None:
        atomic_write(backup, data, mode=0o600)
    write_json(record, {"path": str(path), "existed": data is not None, "time": time.time()})
    return backup if data is not None else None


def _target(path: Path) -> Path:
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        if path.is_symlink():
            raise UserFileError(f"{path} links into a missing folder ({target.parent})")
        target.parent.mkdir(mode=0o700, parents=True)
    return target


def install_include(
    layout: Layout, managed: Path, path: Path | None = None, alias: str = VALIDATE_ALIAS
) -> EditResult:
    """Put `Include <managed>` first in the user's config (creating it 0600 if missing)."""
    path = path or user_config_path()
    target = _target(path)
    line = include_line(str(managed))
    with _folder_lock(target.parent):
        clean_temp_files(target.parent, _temp_prefix(target))  # left by a kill -9 mid-write
        data, st = _read(target)
        result = EditResult(path=path, target=target, changed=False, created=data is None)
        new = add_include(data, line)
        if data is not None and new == data:
            result.created = False
            return result
        if st is not None:
            _refuse_read_only(target, st, managed)
        result.backup = _backup_once(layout, path, data)
        _write_checked(target, new, st, alias, result.warnings)
        result.changed = True
        return result


def uninstall_include(layout: Layout, managed: Path, path: Path | None = None) -> EditResult:
    """Take orch's line out of the user's config; every other byte stays as it is."""
    path = path or user_config_path()
    target = Path(os.path.realpath(path))
    result = EditResult(path=path, target=target, changed=False)
    if not target.parent.is_dir():
        return result
    with _folder_lock(target.parent):
        clean_temp_files(target.parent, _temp_prefix(target))
        data, st = _read(target)
        if data is None or st is None:
            return result
        new = remove_include(data, include_line(str(managed)))
        if new == data:
            return result
        _refuse_read_only(target, st, managed)
        _backup_once(layout, path, data)
        _write_checked(target, new, st, VALIDATE_ALIAS, result.warnings)
        result.changed = True
        return result


def include_state(managed: Path, path: Path | None = None) -> str:
    """'top' (installed), 'not-first' (present but below other lines), 'absent' or 'no-file'."""
    data, _ = _read(Path(os.path.realpath(path or user_config_path())))
    if data is None:
        return "no-file"
    line = include_line(str(managed))
    if include_at_top(data, line):
        return "top"
    return "not-first" if has_include(data, line) else "absent"


def override_warnings(managed: Path, aliases: list[str], path: Path | None = None) -> list[str]:
    """`ssh -G` with the user's file vs orch's file alone: each difference, with its line."""
    path = path or user_config_path()
    data, _ = _read(Path(os.path.realpath(path)))
    if data is None:
        return []
    text = data.decode("utf-8", "replace")
    out: list[str] = []
    for alias in aliases:
        wanted = _ssh_g(managed, alias)
        effective = _ssh_g(path, alias)
        if effective.returncode != 0:
            out.append(f"ssh -G {alias} fails with {path}: {effective.stderr.strip()[-300:]}")
            continue
        found = find_overrides(
            text,
            alias,
            parse_ssh_g(wanted.stdout),
            parse_ssh_g(effective.stdout),
            include_line(str(managed)),
        )
        out += [f"{alias}: {o.message(str(path))}" for o in found]
    return out
