"""Merging orch's attach entry into launch.json: comments, trailing commas and user bytes survive."""

from __future__ import annotations

import json

import pytest

from remote_config.launch_json import (
    LaunchJsonError,
    attach_configuration,
    merge_configuration,
    parse,
)

ENTRY = attach_configuration("attach train", 45678, "${workspaceFolder}", "/home/u/work/p")


def values(text: str) -> dict:
    """The JSON value of JSONC text, via the module's own parser positions."""
    root = parse(text)
    assert root is not None

    def conv(node):
        if node.kind == "object":
            return {k: conv(v) for k, v in node.members}
        if node.kind == "array":
            return [conv(i) for i in node.items]
        return node.value

    return conv(root)


def test_missing_file_gets_a_new_document() -> None:
    out = merge_configuration(None, ENTRY)
    assert json.loads(out) == {"version": "0.2.0", "configurations": [ENTRY]}


@pytest.mark.parametrize("text", ["", "   \n", "// only a comment\n"])
def test_empty_file_gets_a_new_document(text: str) -> None:
    assert json.loads(merge_configuration(text, ENTRY))["configurations"] == [ENTRY]


USER = """{
    // my launch configs
    "version": "0.2.0",
    "configurations": [
        {
            "name": "Python: current file", // keep this comment
            "type": "debugpy",
            "request": "launch",
            "program": "${file}",  /* block */
        },
    ],
}
"""


def test_comments_and_trailing_commas_survive_and_user_entry_is_byte_identical() -> None:
    out = merge_configuration(USER, ENTRY)
    user_entry = USER[USER.index("        {") : USER.index("        },") + len("        }")]
    assert user_entry in out
    assert "// my launch configs" in out and "/* block */" in out
    configs = values(out)["configurations"]
    assert [c["name"] for c in configs] == ["Python: current file", "Orch: attach train"]
    assert configs[1] == ENTRY
    # The text before the insertion point is untouched.
    assert out.startswith(USER[: USER.index("        },") + len("        },")])


def test_existing_orch_entry_is_updated_in_place() -> None:
    first = merge_configuration(USER, ENTRY)
    moved = dict(ENTRY, connect={"host": "127.0.0.1", "port": 50000})
    second = merge_configuration(first, moved)
    configs = values(second)["configurations"]
    assert len(configs) == 2
    assert configs[1]["connect"]["port"] == 50000
    # Idempotent: the same entry again changes nothing.
    assert merge_configuration(second, moved) == second


def test_orch_entry_between_user_entries_keeps_its_place() -> None:
    text = json.dumps({"configurations": [{"name": "a"}, dict(ENTRY), {"name": "z"}]}, indent=2)
    out = merge_configuration(text, dict(ENTRY, justMyCode=True))
    names = [c["name"] for c in values(out)["configurations"]]
    assert names == ["a", "Orch: attach train", "z"]
    assert values(out)["configurations"][1]["justMyCode"] is True


def test_no_configurations_key_and_empty_array() -> None:
    out = merge_configuration('{\n  "version": "0.2.0"\n}\n', ENTRY)
    assert values(out) == {"version": "0.2.0", "configurations": [ENTRY]}
    out = merge_configuration('{"configurations": [ /* none yet */ ]}', ENTRY)
    assert values(out)["configurations"] == [ENTRY]
    assert "/* none yet */" in out


def test_last_item_without_trailing_comma() -> None:
    text = '{"configurations": [{"name": "a"}]}'
    assert [c["name"] for c in values(merge_configuration(text, ENTRY))["configurations"]] == [
        "a",
        "Orch: attach train",
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"configurations": [}', "line 1, column 21"),
        ('{\n  "configurations": [\n    {"name": "a",,}\n  ]\n}', "line 3, column 18"),
        ('{"a": 1 "b": 2}', "line 1, column 9"),
        ('{"a": "unterminated\n}', "line 1, column 7"),
        ("[1, 2]", "line 1, column 1"),
        ('{"configurations": {"name": "x"}}', "line 1, column 20"),
        ("{ /* never closed ", "line 1, column 3"),
    ],
)
def test_invalid_json_is_a_clear_error(text: str, where: str) -> None:
    with pytest.raises(LaunchJsonError) as caught:
        merge_configuration(text, ENTRY)
    assert str(caught.value).startswith(where)


def test_crlf_file_keeps_its_line_endings_outside_the_entry() -> None:
    text = USER.replace("\n", "\r\n")
    out = merge_configuration(text, ENTRY)
    assert text[: text.index("    ],")].rstrip() in out
    assert values(out)["configurations"][1] == ENTRY


def test_is_listening_reads_the_listen_state_of_a_port() -> None:
    from remote_config.debug import is_listening

    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 0100007F:6F2E 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0\n"
        "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000 0\n"
    )
    assert is_listening(table, 0x6F2E)
    assert not is_listening(table, 0x1F90)  # connected, not listening
    assert not is_listening(table, 5678)
    assert not is_listening("garbage\n", 5678)
