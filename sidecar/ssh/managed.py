"""orch's managed ssh config file (`$ORCH_HOME/ssh/config`): rendered, written atomically.

Host blocks are rendered by `remote_config.ssh_config`; this module merges them with the ones
written before (kept in a JSON index `hosts.json` beside the config, so concurrent writers for
different machines never lose each other's hosts), under an flock, and replaces the file
atomically. Writing the same entries twice leaves the file byte-identical.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path

from remote_config.ssh_config import HostEntry, LocalForwardSpec, render_config
from sidecar.layout import Layout
from sidecar.machines.base import SSHTarget
from sidecar.state import atomic_write, file_lock, read_json, secure_dir, write_json


def host_entry(
    layout: Layout,
    target: SSHTarget,
    forwards: tuple[LocalForwardSpec, ...] = (),
    compression: bool = False,
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
        compression=compression,
        forwards=forwards,
        proxy_command=target.proxy_command,
        proxy_jump=target.proxy_jump,
    )


def _lock(layout: Layout) -> Path:
    return layout.ssh_dir / ".config.lock"


def write_managed_config(layout: Layout, entries: list[HostEntry]) -> bool:
    """Merge `entries` into the managed config (other aliases are kept); True if it changed."""
    secure_dir(layout.ssh_dir)
    secure_dir(layout.control_dir)
    with file_lock(_lock(layout)):
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
    with file_lock(_lock(layout)):
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
