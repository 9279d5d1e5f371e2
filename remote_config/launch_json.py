"""Merge orch's debugpy attach configuration into a VS Code `launch.json` (pure text in, text out).

launch.json is JSON with comments and trailing commas. The merge edits text spans found by a
small position-tracking JSONC parser, so comments, trailing commas, formatting and every
byte of the user's own entries survive: orch's entry (found by its `name`) is replaced in
place, or appended to `configurations`. Invalid input raises `LaunchJsonError` with the line
and column; the caller then leaves the file untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ORCH_NAME_PREFIX = "Orch: "


class LaunchJsonError(ValueError):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column


@dataclass
class Node:
    kind: str  # object | array | string | number | literal
    start: int
    end: int  # exclusive
    value: Any = None
    members: list[tuple[str, Node]] = field(default_factory=list)  # objects
    items: list[Node] = field(default_factory=list)  # arrays


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, pos: int | None = None) -> LaunchJsonError:
        at = self.pos if pos is None else pos
        line = self.text.count("\n", 0, at) + 1
        column = at - (self.text.rfind("\n", 0, at) + 1) + 1
        return LaunchJsonError(message, line, column)

    def skip(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            ch = text[self.pos]
            if ch in " \t\r\n\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("unterminated /* comment")
                self.pos = end + 2
            else:
                return

    def parse_document(self) -> Node | None:
        self.skip()
        if self.pos == len(self.text):
            return None
        node = self.value()
        self.skip()
        if self.pos != len(self.text):
            raise self.error("unexpected text after the JSON value")
        return node

    def value(self) -> Node:
        self.skip()
        if self.pos >= len(self.text):
            raise self.error("unexpected end of file")
        ch = self.text[self.pos]
        if ch == "{":
            return self.obj()
        if ch == "[":
            return self.arr()
        if ch == '"':
            start = self.pos
            text = self.string()
            return Node("string", start, self.pos, text)
        return self.scalar()

    def string(self) -> str:
        start = self.pos
        self.pos += 1
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\\":
                self.pos += 2
                continue
            if ch == '"':
                self.pos += 1
                try:
                    return str(json.loads(text[start : self.pos]))
                except ValueError:
                    raise self.error("invalid string", start) from None
            if ch == "\n":
                break
            self.pos += 1
        raise self.error("unterminated string", start)

    def scalar(self) -> Node:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ",]} \t\r\n/":
            self.pos += 1
        raw = self.text[start : self.pos]
        try:
            value = json.loads(raw)
        except ValueError:
            raise self.error(f"unexpected {raw[:20]!r}", start) from None
        return Node(
            "number" if isinstance(value, int | float) else "literal", start, self.pos, value
        )

    def obj(self) -> Node:
        node = Node("object", self.pos, -1)
        self.pos += 1
        while True:
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == "}":
                self.pos += 1
                node.end = self.pos
                return node
            if self.pos >= len(self.text) or self.text[self.pos] != '"':
                raise self.error("expected a property name in double quotes")
            key = self.string()
            self.skip()
            if self.pos >= len(self.text) or self.text[self.pos] != ":":
                raise self.error("expected ':'")
            self.pos += 1
            node.members.append((key, self.value()))
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
            elif self.pos >= len(self.text) or self.text[self.pos] != "}":
                raise self.error("expected ',' or '}'")

    def arr(self) -> Node:
        node = Node("array", self.pos, -1)
        self.pos += 1
        while True:
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == "]":
                self.pos += 1
                node.end = self.pos
                return node
            node.items.append(self.value())
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
            elif self.pos >= len(self.text) or self.text[self.pos] != "]":
                raise self.error("expected ',' or ']'")


def parse(text: str) -> Node | None:
    """Parse JSONC text into position-annotated nodes (None for an empty document)."""
    return _Parser(text).parse_document()


def _member(node: Node, key: str) -> Node | None:
    for name, value in node.members:
        if name == key:
            return value
    return None


def _indent_of(text: str, pos: int) -> str:
    line_start = text.rfind("\n", 0, pos) + 1
    prefix = text[line_start:pos]
    return prefix if not prefix.strip() else ""


def _render(entry: dict[str, Any], indent: str, unit: str = "    ") -> str:
    body = json.dumps(entry, indent=len(unit))
    return body.replace("\n", "\n" + indent)


def _line_indent_unit(text: str) -> str:
    for line in text.splitlines():
        stripped = line.lstrip(" \t")
        if stripped and line != stripped:
            return line[: len(line) - len(stripped)]
    return "    "


def merge_configuration(text: str | None, entry: dict[str, Any]) -> str:
    """Return launch.json text with `entry` added, or replacing the entry of the same name."""
    if "name" not in entry:
        raise ValueError("a launch configuration needs a name")
    root = parse(text) if text else None
    if root is None:
        doc = {"version": "0.2.0", "configurations": [entry]}
        return json.dumps(doc, indent=4) + "\n"
    assert text is not None
    if root.kind != "object":
        raise _Parser(text).error("launch.json must hold an object", root.start)
    unit = _line_indent_unit(text)
    configs = _member(root, "configurations")
    if configs is None:
        return _insert_member(text, root, unit, entry)
    if configs.kind != "array":
        raise _Parser(text).error("'configurations' must be an array", configs.start)
    for item in configs.items:
        if item.kind == "object":
            name = _member(item, "name")
            if name is not None and name.value == entry["name"]:
                indent = _indent_of(text, item.start)
                return text[: item.start] + _render(entry, indent, unit) + text[item.end :]
    return _append_item(text, configs, unit, entry)


def _append_item(text: str, array: Node, unit: str, entry: dict[str, Any]) -> str:
    close = array.end - 1  # position of ']'
    if not array.items:
        indent = _indent_of(text, array.start) + unit
        closing_indent = _indent_of(text, array.start)
        inner = text[array.start + 1 : close]
        keep = inner.rstrip()  # comments inside an empty array stay
        return (
            text[: array.start + 1]
            + keep
            + "\n"
            + indent
            + _render(entry, indent, unit)
            + "\n"
            + closing_indent
            + text[close:]
        )
    last = array.items[-1]
    indent = _indent_of(text, last.start) or _indent_of(text, array.start) + unit
    between = text[last.end : close]
    has_trailing_comma = "," in _strip_comments(between)
    if has_trailing_comma:
        comma_at = last.end + _strip_comments(between).index(",") + 1
        return (
            text[:comma_at] + "\n" + indent + _render(entry, indent, unit) + "," + text[comma_at:]
        )
    return text[: last.end] + ",\n" + indent + _render(entry, indent, unit) + text[last.end :]


def _insert_member(text: str, obj: Node, unit: str, entry: dict[str, Any]) -> str:
    indent = unit
    rendered = (
        f'"configurations": [\n{indent}{unit}{_render(entry, indent + unit, unit)}\n{indent}]'
    )
    close = obj.end - 1
    if not obj.members:
        return text[: obj.start + 1] + "\n" + indent + rendered + "\n" + text[close:]
    last = obj.members[-1][1]
    between = text[last.end : close]
    if "," in _strip_comments(between):
        comma_at = last.end + _strip_comments(between).index(",") + 1
        return text[:comma_at] + "\n" + indent + rendered + "," + text[comma_at:]
    return text[: last.end] + ",\n" + indent + rendered + text[last.end :]


def _strip_comments(fragment: str) -> str:
    """Blank out comments in a fragment between values, keeping offsets."""
    out = list(fragment)
    i = 0
    while i < len(fragment):
        if fragment.startswith("//", i):
            end = fragment.find("\n", i)
            end = len(fragment) if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
        elif fragment.startswith("/*", i):
            end = fragment.find("*/", i + 2)
            end = len(fragment) if end < 0 else end + 2
            out[i:end] = " " * (end - i)
            i = end
        else:
            i += 1
    return "".join(out)


def attach_configuration(
    name: str, port: int, local_root: str, remote_root: str, just_my_code: bool = False
) -> dict[str, Any]:
    """orch's debugpy attach entry: the forwarded port and local → remote path mappings."""
    return {
        "name": f"{ORCH_NAME_PREFIX}{name}",
        "type": "debugpy",
        "request": "attach",
        "connect": {"host": "127.0.0.1", "port": port},
        "pathMappings": [{"localRoot": local_root, "remoteRoot": remote_root}],
        "justMyCode": just_my_code,
    }
