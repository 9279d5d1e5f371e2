"""Turn the text of an `orch.toml` into a validated, resolved project config.

Pure: the caller reads the file; this module parses, validates, and reports every problem as
one `ConfigProblem` (file, line where it can be found, dotted field path, what is wrong, and a
"did you mean" for unknown keys). Paths are resolved lexically against the file's folder.
"""

from __future__ import annotations

import difflib
import posixpath
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from remote_config.model import (
    LOCATED_RE,
    CodespacesMachine,
    DebugSection,
    EC2Machine,
    GpuSection,
    JobsSection,
    LocalMachine,
    Machine,
    OrchConfig,
    PortForward,
    ProjectSection,
    SSHMachine,
    SyncSection,
)

CONFIG_NAME = "orch.toml"
_MACHINE_KINDS: dict[str, type[BaseModel]] = {
    "local": LocalMachine,
    "ssh": SSHMachine,
    "ec2": EC2Machine,
    "codespaces": CodespacesMachine,
}
_SECTIONS: dict[str, type[BaseModel]] = {
    "project": ProjectSection,
    "sync": SyncSection,
    "ports": PortForward,
    "jobs": JobsSection,
    "debug": DebugSection,
    "gpu": GpuSection,
}


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass
class ConfigError(Exception):
    problems: list[ConfigProblem] = field(default_factory=list)

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"orch.toml has {count} problem{'s' if count != 1 else ''}:"
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


@dataclass(frozen=True)
class ResolvedConfig:
    """A validated config plus what follows from where it was found."""

    config: OrchConfig
    path: str | None  # the orch.toml, or None when running on defaults
    root: str  # the project folder (holding orch.toml, or the current folder)
    project_name: str
    local_dir: str  # absolute
    remote_dir: str  # absolute or '~/…'

    def machine(self, name: str | None = None) -> tuple[str, Machine]:
        return self.config.machine(name)


def load_config_text(text: str, file: str, root: str) -> ResolvedConfig:
    """Parse and validate `text` (the content of `file`), resolving paths against `root`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_toml_problem(str(exc), file)]) from None
    except RecursionError:
        raise ConfigError([_too_deep(text, file)]) from None
    if _depth(data) > MAX_DEPTH:
        raise ConfigError([_too_deep(text, file)])
    try:
        config = OrchConfig.model_validate(data)
    except ValidationError as exc:
        lines = _line_index(text)
        problems = [_problem(err, data, lines, file) for err in exc.errors()]
        raise ConfigError(problems) from None
    return resolve(config, file, root)


MAX_DEPTH = 16  # orch.toml's own schema nests 4 deep; anything far deeper is a mistake


def _depth(data: Any) -> int:
    """How deeply `data` nests, without recursion (a hostile file may nest thousands deep)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, dict | list):
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _too_deep(text: str, file: str) -> ConfigProblem:
    line = next(
        (n for n, raw in enumerate(text.splitlines(), 1) if raw.count("[") + raw.count("{") > 8),
        None,
    )
    return ConfigProblem(
        file, line, "", f"values are nested too deeply (more than {MAX_DEPTH} levels)"
    )


def resolve(config: OrchConfig, path: str | None, root: str) -> ResolvedConfig:
    name = config.project.name or _safe_name(posixpath.basename(root.rstrip("/")) or "project")
    local_dir = config.sync.local_dir
    if not posixpath.isabs(local_dir):
        local_dir = posixpath.normpath(posixpath.join(root, local_dir))
    remote_dir = config.sync.remote_dir or f"~/work/{name}"
    return ResolvedConfig(config, path, root, name, local_dir, remote_dir)


def _safe_name(raw: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", raw).strip("-_") or "project"
    return cleaned[:63]


def _toml_problem(message: str, file: str) -> ConfigProblem:
    match = re.search(r"\(at line (\d+), column \d+\)", message)
    line = int(match.group(1)) if match else None
    text = re.sub(r"\s*\(at line \d+, column \d+\)", "", message)
    dup = re.match(r"Cannot (?:declare|overwrite a value) \((.*)\) twice|Cannot overwrite", text)
    if dup and dup.group(1) is not None:
        keys = [k.strip(" '\"") for k in dup.group(1).split(",") if k.strip()]
        dotted = ".".join(keys)
        if len(keys) == 2 and keys[0] == "machines":
            return ConfigProblem(
                file, line, dotted, f"duplicate machine {keys[1]!r}: declared twice"
            )
        return ConfigProblem(file, line, dotted, "declared twice")
    return ConfigProblem(file, line, "", f"invalid TOML: {text}")


def _walk(data: Any, loc: tuple[int | str, ...]) -> tuple[list[str | int], Any]:
    """Follow `loc` through the raw data, dropping discriminator tags pydantic inserts."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if _has(node, part):
            node = node[part]
            path.append(part)
        elif i == len(loc) - 1 or not isinstance(node, dict):
            path.append(part)
            node = None
        # else: a union tag ('ec2', 'function-after[...]'): not a key in the file
    return path, node


def _has(node: Any, part: int | str) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and part < len(node)


def _dotted(path: list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problem(
    err: Any, data: Any, lines: dict[tuple[str | int, ...], int], file: str
) -> ConfigProblem:
    path, _ = _walk(data, tuple(err["loc"]))
    line = _find_line(lines, path)
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(path[-1])
        message = f"unknown key {key!r}"
        known = _known_keys(data, path[:-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {close[0]!r}?"
        elif known:
            message += f" (allowed: {', '.join(sorted(known))})"
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "union_tag_invalid" or kind == "union_tag_not_found":
        message = f"'kind' must be one of: {', '.join(_MACHINE_KINDS)}"
        if kind == "union_tag_invalid":
            path = [*path, "kind"]
            line = _find_line(lines, path)
    else:
        message = _clean_message(err["msg"])
        located = LOCATED_RE.match(message) if not path else None
        if located:  # a cross-check naming the field at fault
            path = _parse_dotted(located.group(1))
            message = message[located.end() :]
            line = _find_line(lines, path)
        elif "input" in err and not isinstance(err["input"], dict | list):
            message += f" (got {_short(err['input'])})"
    if path == ["machines"]:  # a problem with a machine's name: point at its table
        for name in reversed(re.findall(r"'([^']+)'", message)):
            line = lines.get(("machines", name), line)
            if ("machines", name) in lines:
                break
    return ConfigProblem(file, line, _dotted(path), message)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _parse_dotted(dotted: str) -> list[str | int]:
    out: list[str | int] = []
    for part in re.findall(r"[a-z_]+|\[\d+\]", dotted):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return out


def _clean_message(msg: str) -> str:
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _known_keys(data: Any, parent: list[str | int]) -> list[str]:
    model: type[BaseModel] | None = None
    if not parent:
        model = OrchConfig
    elif parent[0] in _SECTIONS and len(parent) <= 2:
        model = _SECTIONS[str(parent[0])]
    elif parent[0] == "machines" and len(parent) == 2:
        _, node = _walk(data, tuple(parent))
        kind = node.get("kind", "local") if isinstance(node, dict) else "local"
        model = _MACHINE_KINDS.get(str(kind))
    return list(model.model_fields) if model else []


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")


def _split_key(raw: str) -> list[str]:
    return [part.strip().strip("\"'") for part in raw.split(".")]


def _line_index(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each table/key path in the TOML text to the (1-based) line declaring it."""
    index: dict[tuple[str | int, ...], int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    table: tuple[str | int, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            keys = tuple(_split_key(header.group(2)))
            if header.group(1) == "[[":
                arrays[keys] = arrays.get(keys, -1) + 1
                table = (*keys, arrays[keys])
            else:
                table = keys
            index.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            index.setdefault((*table, *_split_key(key.group(1))), number)
    return index


def _find_line(index: dict[tuple[str | int, ...], int], path: list[str | int]) -> int | None:
    for cut in range(len(path), 0, -1):
        line = index.get(tuple(path[:cut]))
        if line is not None:
            return line
    return None
