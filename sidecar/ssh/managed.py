"""orch's managed ssh config file (`$ORCH_HOME/ssh/config`): rendered, written atomically."""

from __future__ import annotations

from remote_config.ssh_config import HostEntry, LocalForwardSpec, render_config
from sidecar.layout import Layout
from sidecar.machines.base import SSHTarget
from sidecar.state import atomic_write, file_lock, secure_dir


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
        forwards=forwards,
    )


def write_managed_config(layout: Layout, entries: list[HostEntry]) -> None:
    """Merge `entries` into the managed config (entries for other aliases are kept)."""
    secure_dir(layout.control_dir)
    with file_lock(layout.ssh_dir / ".config.lock"):
        existing = read_entries(layout)
        existing.update({e.alias: e for e in entries})
        atomic_write(layout.ssh_config, render_config(list(existing.values())), mode=0o600)
        _write_index(layout, existing)


def read_entries(layout: Layout) -> dict[str, HostEntry]:
    """The entries orch wrote before (kept in a JSON index beside the config)."""
    from sidecar.state import read_json

    raw = read_json(layout.ssh_dir / "hosts.json") or {}
    out: dict[str, HostEntry] = {}
    for alias, fields in raw.items():
        fwds = tuple(LocalForwardSpec(**f) for f in fields.pop("forwards", []))
        out[alias] = HostEntry(**fields, forwards=fwds)
    return out


def _write_index(layout: Layout, entries: dict[str, HostEntry]) -> None:
    from dataclasses import asdict

    from sidecar.state import write_json

    write_json(layout.ssh_dir / "hosts.json", {a: asdict(e) for a, e in entries.items()})
