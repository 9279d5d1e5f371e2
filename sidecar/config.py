"""Finding and reading the project's `orch.toml` (walking up from the current folder)."""

from __future__ import annotations

from pathlib import Path

from remote_config.loader import (
    CONFIG_NAME,
    ConfigError,
    ConfigProblem,
    ResolvedConfig,
    load_config_text,
    resolve,
)
from remote_config.model import OrchConfig
from sidecar.errors import ConfigFileError


def find_config(start: Path) -> Path | None:
    """The nearest `orch.toml` in `start` or a parent folder, or None."""
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def load_project_config(cwd: Path) -> ResolvedConfig:
    """The project config for `cwd`: its orch.toml, or defaults when there is none."""
    path = find_config(cwd.absolute())
    if path is None:
        return resolve(OrchConfig(), None, str(cwd.absolute()))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        problem = ConfigProblem(str(path), None, "", "not UTF-8 text")
        raise ConfigFileError(
            f"{path}: not UTF-8 text", hint="save orch.toml as UTF-8", problems=[problem]
        ) from None
    except OSError as exc:
        problem = ConfigProblem(str(path), None, "", f"cannot be read: {exc.strerror}")
        raise ConfigFileError(
            f"{path}: cannot be read: {exc.strerror}", problems=[problem]
        ) from None
    try:
        return load_config_text(text, str(path), str(path.parent))
    except ConfigError as exc:
        raise ConfigFileError(
            str(exc),
            hint="fix the lines above; `orch config schema` prints the full schema",
            problems=exc.problems,
        ) from None
