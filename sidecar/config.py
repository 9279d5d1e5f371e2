"""Finding and reading the project's `orch.toml` (walking up from the current folder)."""

from __future__ import annotations

from pathlib import Path

from remote_config.loader import CONFIG_NAME, ConfigError, ResolvedConfig, load_config_text, resolve
from remote_config.model import OrchConfig
from sidecar.errors import ConfigFileError


def find_config(start: Path) -> Path | None:
    """The nearest `orch.toml` in `start` or a parent folder, or None.

    Anything named `orch.toml` counts (a folder, a broken link): it is refused when read
    rather than skipped, so a project never silently runs on defaults or a parent's file.
    """
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return None


def load_project_config(cwd: Path) -> ResolvedConfig:
    """The project config for `cwd`: its orch.toml, or defaults when there is none."""
    path = find_config(cwd.absolute())
    if path is None:
        return resolve(OrchConfig(), None, str(cwd.absolute()))
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file (a broken link?)"
        raise ConfigFileError(
            f"{path} is {what}; orch.toml must be a file",
            hint=f"rename or remove {path}, then create orch.toml as a file",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path}: not UTF-8 text", hint="save orch.toml as UTF-8") from None
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        return load_config_text(text, str(path), str(path.parent))
    except ConfigError as exc:
        raise ConfigFileError(
            str(exc), hint="fix the lines above; `orch config schema` prints the full schema"
        ) from None
