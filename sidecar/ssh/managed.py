"""orch's managed ssh config file (`$ORCH_HOME/ssh/config`): rendered, written atomically.

Host blocks are rendered by `remote_config.ssh_config`; this module merges them with the ones
written before (kept in a JSON index `hosts.json` beside the config, so concurrent writers for
different machines never lose each other's hosts), under an flock, and replaces the file
atomically. Writing the same entries twice leaves the file byte-identical.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from remote_config.ssh_config import HostEntry, LocalForwardSpec, render_config
from sidecar.layout import Layout
from sidecar.machines.base import SSHTarget
from sidecar.state import (
    atomic_write,
    clean_temp_files,
    file_lock,
    read_json,
    secure_dir,
    write_json,
)


def host_entry(
    layout: Layout, target: SSHTarget, forwards: tuple[LocalForwardSpec, ...] = ()
) -> HostEntry:
    return HostEntry(
        alias=target.alias,
        hostname=target.host,
        port=target.port,
        user=target.user,
        identity_file=target.identity_file,
        known_hosts_file=target.known_hosts_file,
        host_key_alias=target.host_key_alias,
        control_path=str(layout.control_dir / "%C"),
        server_alive_interval=target.server_alive_interval,
        server_alive_count_max=target.server_alive_count_max,
        compression=target.compression,
        forwards=forwards,
        proxy_command=target.proxy_command,
        proxy_jump=target.proxy_jump,
    )


@contextlib.contextmanager
def config_lock(layout: Layout, *, create: bool = True) -> Iterator[None]:
    """The one lock over orch's ssh files: the managed config, its index, and (taken by
    `orch ssh-config write|remove` around both steps) the Include line in the user's file,
    so a write and a remove running at once never leave the Include without its file.

    With `create=False` (removing) a missing folder is not created just to hold a lock file:
    there is nothing of orch's to remove there."""
    if not create and not layout.ssh_dir.is_dir():
        yield
        return
    secure_dir(layout.ssh_dir)
    with file_lock(layout.ssh_dir / ".config.lock"):
        yield


def write_managed_config(layout: Layout, entries: list[HostEntry]) -> bool:
    """Merge `entries` into the managed config (other aliases are kept); True if it changed."""
    with config_lock(layout):
        return write_managed_config_locked(layout, entries)


def write_managed_config_locked(layout: Layout, entries: list[HostEntry]) -> bool:
    """`write_managed_config` for a caller that already holds `config_lock`."""
    secure_dir(layout.control_dir)
    for name in (layout.ssh_config.name, "hosts.json"):
        clean_temp_files(layout.ssh_dir, f".{name}.")  # left by a writer killed mid-write
    existing = read_entries(layout)
    existing.update({e.alias: e for e in entries})
    text = render_config(list(existing.values()))
    _write_index(layout, existing)
    if _current(layout.ssh_config) == text:
        return False
    atomic_write(layout.ssh_config, text, mode=0o600)
    return True


def remove_managed_config(layout: Layout) -> bool:
    """Delete the managed config and its index; True if there was one."""
    with config_lock(layout, create=False):
        return remove_managed_config_locked(layout)


def remove_managed_config_locked(layout: Layout) -> bool:
    existed = layout.ssh_config.exists()
    for path in (layout.ssh_config, layout.ssh_dir / "hosts.json"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return existed


def read_entries(layout: Layout) -> dict[str, HostEntry]:
    """The entries orch wrote before (kept in a JSON index beside the config)."""
    raw = read_json(layout.ssh_dir / "hosts.json") or {}
    out: dict[str, HostEntry] = {}
    for alias, fields in raw.items():
        fwds = tuple(LocalForwardSpec(**f) for f in fields.pop("forwards", []))
        out[alias] = HostEntry(**fields, forwards=fwds)
    return out


def _current(path: Path) -> str | None:
    try:
        return path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def _write_index(layout: Layout, entries: dict[str, HostEntry]) -> None:
    write_json(layout.ssh_dir / "hosts.json", {a: asdict(e) for a, e in entries.items()})
