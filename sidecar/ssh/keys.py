"""orch's client key and the pinned host keys in `$ORCH_HOME/ssh/known_hosts`.

Host keys are pinned when a machine is provisioned through a trusted channel (for the local
machine: when its host key is generated) and never learnt from the network afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

from sidecar.layout import Layout
from sidecar.state import atomic_write, file_lock


def generate_keypair(private: Path, comment: str) -> str:
    """Create an ed25519 key pair (private 0600, public beside it); returns the public line."""
    import asyncssh  # heavy: only when keys are made

    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    atomic_write(private, key.export_private_key("openssh"), mode=0o600)
    public = key.export_public_key("openssh").decode().strip()
    atomic_write(private.with_name(private.name + ".pub"), public + "\n", mode=0o644)
    return public


def public_line(private: Path) -> str:
    return private.with_name(private.name + ".pub").read_text().strip()


def ensure_client_key(layout: Layout) -> Path:
    """orch's own client key, generated once under `$ORCH_HOME/keys`."""
    key = layout.client_key
    with file_lock(layout.keys_dir / ".lock"):
        if not key.exists():
            generate_keypair(key, comment=f"orch@{os.uname().nodename}")
    return key


def _key_fields(line: str) -> tuple[str, str]:
    parts = line.split()
    if len(parts) < 2:
        raise ValueError(f"not a public key line: {line!r}")
    return parts[0], parts[1]


def pin_host_key(layout: Layout, alias: str, public_key: str) -> None:
    """Record `public_key` as the only accepted host key for `alias` (replacing any other)."""
    algorithm, blob = _key_fields(public_key)
    path = layout.known_hosts
    with file_lock(layout.ssh_dir / ".known_hosts.lock"):
        kept = [line for line in _read_lines(path) if not line.strip() or line.split()[0] != alias]
        kept.append(f"{alias} {algorithm} {blob}")
        atomic_write(path, "\n".join(kept) + "\n", mode=0o600)


def unpin_host_key(layout: Layout, alias: str) -> bool:
    path = layout.known_hosts
    with file_lock(layout.ssh_dir / ".known_hosts.lock"):
        lines = _read_lines(path)
        kept = [line for line in lines if not line.strip() or line.split()[0] != alias]
        if len(kept) == len(lines):
            return False
        atomic_write(path, "\n".join(kept) + "\n" if kept else "", mode=0o600)
        return True


def pinned_key(layout: Layout, alias: str) -> str | None:
    for line in _read_lines(layout.known_hosts):
        parts = line.split()
        if len(parts) >= 3 and parts[0] == alias:
            return f"{parts[1]} {parts[2]}"
    return None


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []
