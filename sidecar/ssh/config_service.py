"""`orch ssh-config show|write|remove`: the managed file plus the user's one Include line.

`write` renders the Host blocks of the project's machines that orch can reach into
`$ORCH_HOME/ssh/config`, puts `Include <that file>` first in the user's ssh config, and then
checks with `ssh -G` that OpenSSH resolves each host to orch's settings, warning (with file
and line) about any user setting that still changes them. Nothing here runs implicitly: only
an explicit `write` (CLI or `orch.ssh.writeConfig`) touches the user's file.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from remote_config.ssh_config import HostEntry
from sidecar.layout import Layout
from sidecar.ssh import user_config
from sidecar.ssh.managed import (
    config_lock,
    read_entries,
    remove_managed_config_locked,
    write_managed_config_locked,
)


class SshConfigResult(BaseModel):
    path: str = Field(description="orch's managed ssh config")
    hosts: list[str]
    user_config: str = Field(description="the user's ssh config that includes it")
    include: str = Field(description="top | not-first | absent | no-file")
    changed: bool = False
    backup: str | None = None
    warnings: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(
        default_factory=list, description="machines not written (not running, no host key)"
    )
    text: str | None = None


def _result(layout: Layout, **extra: object) -> SshConfigResult:
    managed = layout.ssh_config
    return SshConfigResult(
        path=str(managed),
        hosts=sorted(read_entries(layout)),
        user_config=str(user_config.user_config_path()),
        include=user_config.include_state(managed),
        **extra,
    )


def _include_warning(state: str, layout: Layout) -> list[str]:
    if state == "not-first":
        return [
            f"orch's Include line is not the first line of {user_config.user_config_path()}: "
            "settings above it win over orch's; run `orch ssh-config write` to move it up"
        ]
    return []


def show(layout: Layout) -> SshConfigResult:
    text = layout.ssh_config.read_text() if layout.ssh_config.exists() else None
    result = _result(layout, text=text)
    result.warnings = _include_warning(result.include, layout)
    if result.include in ("top", "not-first") and result.hosts:
        result.warnings += user_config.override_warnings(layout.ssh_config, result.hosts)
    return result


def write(layout: Layout, entries: list[HostEntry], skipped: list[str]) -> SshConfigResult:
    with config_lock(layout):  # both files under one lock (see managed.config_lock)
        changed = write_managed_config_locked(layout, entries)
        hosts = sorted(read_entries(layout))
        edit = user_config.install_include(
            layout, layout.ssh_config, alias=hosts[0] if hosts else user_config.VALIDATE_ALIAS
        )
    result = _result(layout, changed=changed or edit.changed, skipped=skipped)
    result.backup = str(edit.backup) if edit.backup else None
    result.warnings = [*edit.warnings, *_include_warning(result.include, layout)]
    result.warnings += user_config.override_warnings(layout.ssh_config, hosts)
    return result


def remove(layout: Layout) -> SshConfigResult:
    with config_lock(layout, create=False):
        edit = user_config.uninstall_include(layout, layout.ssh_config)
        removed = remove_managed_config_locked(layout)
    result = _result(layout, changed=edit.changed or removed)
    result.warnings = edit.warnings
    return result
