"""Completion and hover for orch.toml from the JSON Schema (pure)."""

from __future__ import annotations

from remote_config.model import OrchConfig
from remote_config.schema_help import complete, hover, table_at

SCHEMA = OrchConfig.model_json_schema()


def labels(text: str, line: int, character: int) -> list[str]:
    return [s.label for s in complete(SCHEMA, text, line, character)]


def test_the_table_of_a_line_is_the_nearest_header_above() -> None:
    lines = ["[project]", "name = 'x'", "[[ports]]", "local = 1"]
    assert table_at(lines, 1) == (["project"], 0)
    assert table_at(lines, 3) == (["ports", "*"], 2)
    assert table_at(["a = 1"], 0) == ([], -1)


def test_keys_follow_the_machine_kind_and_skip_present_ones() -> None:
    ec2 = '[machines.big]\nkind = "ec2"\n\n'
    keys = labels(ec2, 2, 0)
    assert "instance_type" in keys and "host" not in keys and "kind" not in keys
    assert "host" in labels('[machines.box]\nkind = "ssh"\n\n', 2, 0)
    assert set(labels("[[ports]]\n\n", 1, 0)) >= {"local", "remote"}


def test_values_and_tables() -> None:
    values = complete(SCHEMA, "[sync]\nuse_gitignore = ", 1, 16)
    assert [v.label for v in values][:2] == ["true", "false"]
    assert all(not v.insert.startswith(" ") for v in values)  # `= ` typed already
    assert complete(SCHEMA, "[sync]\nuse_gitignore =", 1, 15)[0].insert == " true"
    assert "machines.NAME" in labels("[", 0, 1)
    assert "project" in labels("", 0, 0)  # the root holds tables


def test_hover_on_keys_and_tables_only() -> None:
    text = "[sync]\nremote_dir = '~/x'\n"
    shown = hover(SCHEMA, text, 1, 3)
    assert shown is not None and shown.startswith("**remote_dir** (string)")
    assert hover(SCHEMA, text, 1, 16) is None  # on the value
    table = hover(SCHEMA, text, 0, 2)
    assert table is not None and table.startswith("**sync** (table)")
