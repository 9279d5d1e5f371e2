"""Completion and hover for `orch.toml`, read from the config's JSON Schema.

Pure: given the schema (`OrchConfig.model_json_schema()`), the text being edited and a
position, say which keys or values fit there and what a key means. It works on text that does
not parse (the user is typing): the table a line belongs to is the nearest header above it,
and a machine's kind is read from its `kind = "…"` line (`local` when there is none).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

Schema = dict[str, Any]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]*?)\s*\]?\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")
_KIND = re.compile(r"""^\s*kind\s*=\s*["']([^"']*)["']""")
_WORD = re.compile(r"[A-Za-z0-9_\-]+")


@dataclass(frozen=True)
class Suggestion:
    label: str
    kind: str  # "key", "value" or "table"
    detail: str  # the type, as the schema says it
    documentation: str
    insert: str  # the text to insert


def _split(raw: str) -> list[str]:
    return [part.strip().strip("\"'") for part in raw.split(".") if part.strip()]


def table_at(lines: list[str], line: int) -> tuple[list[str], int]:
    """The table path line `line` (0-based) belongs to, and the line of its header (-1: root).

    `[[ports]]` gives `["ports", "*"]` (an element of the array).
    """
    for number in range(min(line, len(lines) - 1), -1, -1):
        header = _HEADER.match(lines[number])
        if header and lines[number].lstrip().startswith("["):
            keys = _split(header.group(2))
            return ([*keys, "*"] if header.group(1) == "[[" else keys), number
    return [], -1


def _table_lines(lines: list[str], header: int) -> list[str]:
    body = []
    for text in lines[header + 1 :]:
        if text.lstrip().startswith("["):
            break
        body.append(text)
    return body


def _resolve(schema: Schema, node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema.get("$defs", {}).get(name, {})
    return node


def _pick_kind(schema: Schema, node: Any, kind: str) -> Any:
    mapping = node.get("discriminator", {}).get("mapping", {}) if isinstance(node, dict) else {}
    if mapping:
        return _resolve(schema, {"$ref": mapping.get(kind, mapping.get("local", ""))})
    return node


def node_at(schema: Schema, path: list[str], kind: str = "local") -> Any:
    """The schema of the value at `path` (a machine's by its `kind`), or None."""
    node: Any = schema
    for part in path:
        node = _resolve(schema, node)
        if not isinstance(node, dict):
            return None
        props = node.get("properties", {})
        if part == "*" and isinstance(node.get("items"), dict):
            node = node["items"]
        elif part in props:
            node = props[part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
        node = _pick_kind(schema, _resolve(schema, node), kind)
    return _resolve(schema, node)


def _types(schema: Schema, node: Any) -> list[str]:
    node = _resolve(schema, node)
    if not isinstance(node, dict):
        return []
    if "const" in node:
        return [json.dumps(node["const"])]
    if "enum" in node:
        return [json.dumps(v) for v in node["enum"]]
    if "anyOf" in node:
        return [t for option in node["anyOf"] for t in _types(schema, option) if t != "null"]
    kind = node.get("type")
    if kind == "array":
        inner = _types(schema, node.get("items", {}))
        return [f"array of {' | '.join(inner) or 'values'}"]
    return ["table" if kind == "object" else str(kind)] if kind else []


def describe(schema: Schema, node: Any, name: str) -> tuple[str, str]:
    """(type text, markdown documentation) of a key."""
    node = _resolve(schema, node)
    detail = " | ".join(_types(schema, node)) or "table"
    parts = [f"**{name}** ({detail})"]
    if isinstance(node, dict):
        if node.get("description"):
            parts.append(str(node["description"]))
        if "default" in node and node["default"] is not None:
            parts.append(f"Default: `{json.dumps(node['default'])}`")
    return detail, "\n\n".join(parts)


def _kind_of_table(lines: list[str], path: list[str], header: int) -> str:
    if len(path) >= 2 and path[0] == "machines" and header >= 0:
        for text in _table_lines(lines, header):
            match = _KIND.match(text)
            if match:
                return match.group(1)
    return "local"


def complete(schema: Schema, text: str, line: int, character: int) -> list[Suggestion]:
    """What fits at (line, character), both 0-based."""
    lines = text.splitlines() or [""]
    if line >= len(lines):
        lines += [""] * (line - len(lines) + 1)
    before = lines[line][:character]
    if before.lstrip().startswith("["):
        return _tables(schema)
    path, header = table_at(lines, line)
    if not path and not _KEY.match(before):
        return _tables(schema)  # the root holds tables only
    kind = _kind_of_table(lines, path, header)
    key = _KEY.match(before)
    if key:
        node = node_at(schema, [*path, key.group(1)], kind)
        values = _values(schema, node, path, key.group(1))
        if before.endswith(" "):  # `key = ` typed: no second space
            values = [replace(v, insert=v.insert.lstrip()) for v in values]
        return values
    table = node_at(schema, path, kind)
    if not isinstance(table, dict):
        return []
    present = {m.group(1) for t in _table_lines(lines, header) if (m := _KEY.match(t))}
    suggestions = []
    for name, prop in table.get("properties", {}).items():
        if name in present or isinstance(_resolve(schema, prop).get("properties"), dict):
            continue
        detail, doc = describe(schema, prop, name)
        suggestions.append(Suggestion(name, "key", detail, doc, f"{name} = "))
    return suggestions


def _tables(schema: Schema) -> list[Suggestion]:
    suggestions = []
    for name, prop in schema.get("properties", {}).items():
        node = _resolve(schema, prop)
        _, doc = describe(schema, prop, name)
        if node.get("type") == "array":
            suggestions.append(Suggestion(name, "table", "array of tables: [[ports]]", doc, name))
        elif "additionalProperties" in node and not node.get("properties"):
            suggestions.append(Suggestion(f"{name}.NAME", "table", "table", doc, f"{name}."))
        else:
            suggestions.append(Suggestion(name, "table", "table", doc, name))
    return suggestions


def _values(schema: Schema, node: Any, path: list[str], key: str) -> list[Suggestion]:
    node = _resolve(schema, node)
    if not isinstance(node, dict):
        return []
    if key == "kind" and path[:1] == ["machines"]:
        mapping = schema["properties"]["machines"]["additionalProperties"]["discriminator"]
        values: list[Any] = list(mapping["mapping"])
    else:
        values = [node["const"]] if "const" in node else list(node.get("enum", []))
        options = [_resolve(schema, o) for o in node.get("anyOf", [])] or [node]
        if any(o.get("type") == "boolean" for o in options if isinstance(o, dict)):
            values += [True, False]
        if "default" in node and node["default"] is not None and node["default"] not in values:
            values.append(node["default"])
    _, doc = describe(schema, node, key)
    return [Suggestion(json.dumps(v), "value", key, doc, f" {json.dumps(v)}") for v in values]


def hover(schema: Schema, text: str, line: int, character: int) -> str | None:
    """Markdown about the key or table name at (line, character), both 0-based."""
    lines = text.splitlines()
    if line >= len(lines):
        return None
    current = lines[line]
    word = next((m for m in _WORD.finditer(current) if m.start() <= character <= m.end()), None)
    if word is None:
        return None
    if current.lstrip().startswith("["):
        match = _HEADER.match(current)
        keys = _split(match.group(2)) if match else []
        if not keys or word.group(0) != keys[0]:
            return None
        prop = schema.get("properties", {}).get(keys[0])
        return describe(schema, prop, keys[0])[1] if prop is not None else None
    key = _KEY.match(current)
    if key is None or word.start() != key.start(1):
        return None
    path, start = table_at(lines, line)
    node = node_at(schema, [*path, key.group(1)], _kind_of_table(lines, path, start))
    return describe(schema, node, key.group(1))[1] if node is not None else None
