"""`orch logs`'s fast path reads its words as the ordinary parser does, or leaves them to it."""

from __future__ import annotations

import pytest

from sidecar.cli.main import _logs_words, build_parser


@pytest.mark.parametrize(
    "words",
    [
        ["train"],
        ["train", "-f"],
        ["-f", "train"],
        ["train", "--follow", "-n", "20"],
        ["train", "--tail", "0", "-m", "gpu"],
        ["--machine", "gpu", "train", "--on", "fargate", "-n", "3", "-n", "5"],
    ],
)
def test_the_plain_forms_read_as_the_parser_reads_them(words: list[str]) -> None:
    parsed = _logs_words(words)
    args = build_parser().parse_args(["logs", *words])
    assert parsed == (args.name, args.follow, args.tail, args.machine, args.on)


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["--help"],
        ["train", "--tail=5"],
        ["train", "-n", "-1"],
        ["train", "-n", "x"],
        ["train", "-n"],
        ["a", "b"],
        ["train", "--fol"],
        ["--", "train"],
    ],
)
def test_anything_else_is_left_to_the_parser(words: list[str]) -> None:
    assert _logs_words(words) is None
