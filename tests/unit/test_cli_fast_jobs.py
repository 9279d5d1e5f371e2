"""`orch run/stop/restart/rm`'s light path reads its words as the ordinary parser (and `orch
run`'s own option scanner) reads them, or leaves them to it; and it imports no pydantic."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sidecar.cli.fast_jobs import job_words, run_words
from sidecar.cli.jobs_cmds import parse_run_args
from sidecar.cli.main import build_parser
from tests.helpers import REPO


@pytest.mark.parametrize(
    ("verb", "words"),
    [
        ("stop", ["train"]),
        ("stop", ["train", "--json"]),
        ("stop", ["--json", "-m", "gpu", "train"]),
        ("restart", ["train", "--on", "fargate", "--machine", "a", "-m", "b"]),
        ("rm", ["train", "--purge"]),
        ("rm", ["--on", "fargate", "train"]),
    ],
)
def test_the_plain_job_forms_read_as_the_parser_reads_them(verb: str, words: list[str]) -> None:
    got = job_words(verb, words)
    args = build_parser().parse_args([verb, *words])
    assert got is not None
    assert (got["name"], got["machine"], got["on"]) == (args.name, args.machine, args.on)
    assert got["json"] == getattr(args, "json", False)
    assert got["purge"] == getattr(args, "purge", False)


@pytest.mark.parametrize(
    ("verb", "words"),
    [
        ("stop", []),
        ("stop", ["--help"]),
        ("stop", ["a", "b"]),
        ("stop", ["train", "--purge"]),  # rm's flag
        ("rm", ["train", "--json"]),  # stop's flag
        ("stop", ["train", "--machine=gpu"]),
        ("stop", ["train", "-mgpu"]),
        ("stop", ["train", "-m"]),
        ("restart", ["train", "--on", "-x"]),
        ("rm", ["--", "train"]),
        ("stop", ["train", "--js"]),
    ],
)
def test_other_job_forms_are_left_to_the_parser(verb: str, words: list[str]) -> None:
    assert job_words(verb, words) is None


@pytest.mark.parametrize(
    "words",
    [
        ["train", "--", "python", "train.py", "--lr", "3"],
        ["train", "python train.py --lr 3"],
        ["train", "python", "train.py"],
        ["train", "--json", "--replace", "-m", "gpu", "--", "sh", "-c", "echo hi"],
        ["train", "--no-snapshot", "--on", "fargate", "--outputs", "out", "--", "x"],
        ["train", "--live", "--machine=gpu", "x"],
        ["train", "--snapshot", "--", "--help"],
        ["--replace", "bench", "--", "sleep", "60"],  # options before NAME: argparse's
        ["--json", "-m", "gpu", "--live", "train", "--replace", "-m", "cpu", "x"],
        ["--on", "fargate", "--outputs", "o", "--no-snapshot", "t", "--snapshot", "--", "x"],
    ],
)
def test_the_plain_run_forms_read_as_the_ordinary_path_reads_them(words: list[str]) -> None:
    got = run_words(words)
    want = parse_run_args(build_parser().parse_args(["run", *words]))
    assert got is not None
    assert got == {
        "name": want.name,
        "command": want.command,
        "json": want.json,
        "machine": want.machine,
        "replace": want.replace,
        "snapshot": want.snapshot,
        "on": want.on,
        "outputs": want.outputs,
    }
    assert want.environment() == {}  # (what the light path sends as env)


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["--help"],
        ["--", "train", "x"],
        ["--machine=gpu", "train", "x"],
        ["-m", "-x", "train", "x"],
        ["--replace"],
        ["-e", "A=1", "train", "x"],
        ["--debug", "train", "x"],
        ["--rep", "train", "x"],
        ["train"],  # no command: the ordinary path's error
        ["train", "--"],
        ["train", "--nope", "--", "x"],
        ["train", "-e", "A=1", "--", "x"],  # checked by remote_config (pydantic)
        ["train", "--expect", "2h", "--", "x"],  # needs the machine's provider
        ["train", "--debug", "--", "python", "x.py"],
        ["train", "-m"],
    ],
)
def test_other_run_forms_are_left_to_the_ordinary_path(words: list[str]) -> None:
    assert run_words(words) is None


def test_the_light_path_imports_no_pydantic() -> None:
    code = (
        "import sys\n"
        "from sidecar.cli import fast_jobs\n"
        "fast_jobs.run_words(['t', '--json', '--', 'x']); fast_jobs.job_words('stop', ['t'])\n"
        "from sidecar import agent_calls\n"
        "heavy = {'pydantic', 'asyncssh', 'asyncio'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
