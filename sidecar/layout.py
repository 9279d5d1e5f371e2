"""Where orch keeps its state under `$ORCH_HOME`: one place that names every path.

$ORCH_HOME/                 0700
  keys/id_ed25519{,.pub}    orch's client key (0600)
  ssh/known_hosts           pinned host keys, one line per machine alias
  ssh/config                the managed ssh config (Host blocks orch renders)
  machines/NAME/            per-machine state (the local machine's keys, home, pid state)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from sidecar.errors import UsageError
from sidecar.state import orch_home, secure_dir

# Unix socket paths are limited to ~104 bytes; ControlPath's %C expands to 40 hex digits.
_MAX_CONTROL_DIR = 104 - 41 - 8


def check_home(home: Path) -> Path:
    """`home` if OpenSSH can name files under it, else a UsageError saying why.

    Paths under $ORCH_HOME go into ssh config lines (IdentityFile, ControlPath, Include…):
    a single or a double quote is quoted correctly, but OpenSSH expands `%x` and `${X}` in
    several of them and has no reliable escape for a backslash, a line break, or both kinds
    of quote in one value.
    """
    text = str(home)
    bad = [c for c in ("%", "${", "\\", "\n", "\r", "\x00") if c in text]
    if "'" in text and '"' in text:
        bad.append("both ' and \"")
    if bad:
        raise UsageError(
            f"ORCH_HOME {text!r} cannot be used: OpenSSH cannot name files under it "
            f"(it contains {', '.join(repr(b) for b in bad)})",
            hint="set ORCH_HOME to a folder path without those characters",
        )
    return home


@dataclass(frozen=True)
class Layout:
    home: Path

    @classmethod
    def from_env(cls) -> Layout:
        return cls(check_home(orch_home()))

    def ensure(self) -> Layout:
        secure_dir(self.home)
        for sub in (self.keys_dir, self.ssh_dir, self.home / "machines"):
            secure_dir(sub)
        return self

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def client_key(self) -> Path:
        return self.keys_dir / "id_ed25519"

    @property
    def ssh_dir(self) -> Path:
        return self.home / "ssh"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.ssh_dir / "config"

    @property
    def control_dir(self) -> Path:
        """A short folder for ControlMaster sockets (falls back to /tmp when $ORCH_HOME is deep)."""
        preferred = self.ssh_dir / "cm"
        if len(str(preferred)) <= _MAX_CONTROL_DIR:
            return preferred
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:10]
        return Path(f"/tmp/orch-{os.getuid()}-{digest}")  # noqa: S108 (0700, owner checked)

    def machine_dir(self, name: str) -> Path:
        return self.home / "machines" / name
