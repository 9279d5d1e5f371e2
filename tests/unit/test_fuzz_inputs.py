"""Fuzzing the two ways a user talks to orch: its command line and its orch.toml (issue 13).

Every generated case must end in one of the documented exit codes (docs/cli.md) with a
message, never a traceback or an "internal error". The CLI runs in-process (`main(argv)`)
against a project whose machine is an ssh host on a closed loopback port, so every command
fails fast and nothing is started on this computer; orch.toml texts go through the real
loader. Derandomized, so a failure reproduces. Cases per run: CLI 900; orch.toml 1,000
random documents, 500 near-valid ones (every problem must carry its line), 300 arbitrary
texts and 60 through `orch config show`: 2,760 in all, about 10 s.

(Only a background forwarder may start: `orch ports add` spawns one that fails to connect
and exits when idle; the fixture stops it.)
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remote_config.loader import ConfigError, load_config_text
from sidecar.cli.main import main
from sidecar.errors import (
    EXIT_CONFIG,
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)

DOCUMENTED = {
    EXIT_OK,
    EXIT_FAILED,
    EXIT_USAGE,
    EXIT_CONFIG,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    EXIT_CONFLICT,
    EXIT_INTERRUPTED,
}
CLI_CASES = 900
TOML_CASES = 1000
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEc4k5mK0f5uQj5C8a1m6yU9Zq4b1n0yVv6l0l3cF0Fh"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="orch-fuzz-cli-"))
    project = root / "proj"
    project.mkdir()
    (project / "orch.toml").write_text(
        '[project]\ndefault_machine = "box"\n\n[machines.box]\nkind = "ssh"\n'
        f'host = "127.0.0.1"\nport = {_closed_port()}\nuser = "nobody"\nhost_key = "{KEY}"\n'
    )
    saved = {k: os.environ.get(k) for k in ("ORCH_HOME", "ORCH_SSH_USER_CONFIG", "ORCH_DEBUG")}
    os.environ["ORCH_HOME"] = str(root / "home")
    os.environ["ORCH_SSH_USER_CONFIG"] = str(root / "user-ssh" / "config")
    os.environ.pop("ORCH_DEBUG", None)
    try:
        yield project
    finally:
        from tests.conftest import _stop_orch_processes

        _stop_orch_processes(root / "home")
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root, ignore_errors=True)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    return code, out.getvalue(), err.getvalue()


# -- the command line ------------------------------------------------------------------------

HOSTILE = st.sampled_from(
    [
        "0",
        "-1",
        "+80",
        "08080",
        "65536",
        "70000",
        "18555:70000",
        "a:0",
        "18556:0",
        "1:2:3:4",
        "8888",
        "8888:8000",
        "1:h:2",
        "",
        " ",
        "-",
        "--",
        "-x",
        "--json",
        "-m",
        "box",
        "nope",
        "LOCAL",
        "K=V",
        "=V",
        "1K=V",
        "K",
        "a b",
        "a;b",
        "$(id)",
        "`id`",
        "../x",
        "x/../y",
        "é",
        "\u202e",
        "\n",
        "\t",
        "9" * 40,
        "-e",
        "--env",
        "--replace",
        "-n",
        "-f",
        "--purge",
        "--reverse",
        "-R",
        "true",
        "1e3",
        "0x50",
        "nan",
        "name-" + "x" * 70,
        "job_1",
    ]
)
TOKEN = st.one_of(
    HOSTILE,
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12),
    st.integers(-(2**70), 2**70).map(str),
).filter(lambda t: t != "local")  # never the embedded machine: nothing may start here

COMMANDS = st.sampled_from(
    [
        ["up"],
        ["down"],
        ["status"],
        ["status", "--json"],
        ["config", "show"],
        ["config", "path"],
        ["config", "show", "--json"],
        ["ports", "list"],
        ["ports", "add"],
        ["ports", "add", "--reverse"],
        ["ports", "remove"],
        ["ports", "remove", "--reverse"],
        ["ssh-config", "show"],
        ["machine", "forget-key"],
        ["sync", "status"],
        ["sync", "stop"],
        ["run"],
        ["run", "-e"],
        ["logs"],
        ["logs", "-n"],
        ["stop"],
        ["restart"],
        ["rm"],
        ["debug", "config"],
        ["nonsense"],
        [],
    ]
)


@settings(
    max_examples=CLI_CASES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command=COMMANDS, args=st.lists(TOKEN, max_size=4))
def test_cli_fuzz_every_failure_is_a_documented_exit_with_a_message(
    sandbox: Path, command: list[str], args: list[str]
) -> None:
    argv = ["-C", str(sandbox), *command, *args]
    code, out, err = run_cli(argv)
    assert code in DOCUMENTED, (argv, code, err)
    assert "Traceback" not in err + out and "internal error" not in err, (argv, err)
    if code != 0:
        assert err.strip(), (argv, code, out)


# -- orch.toml ---------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["local", "ssh", "ec2", "codespaces", "box", "127.0.0.1", "~/x", "/abs"]),
)
KEYS = st.sampled_from(
    [
        "project",
        "name",
        "default_machine",
        "machines",
        "local",
        "box",
        "kind",
        "host",
        "port",
        "user",
        "host_key",
        "compression",
        "server_alive_interval",
        "server_alive_count_max",
        "sync",
        "local_dir",
        "remote_dir",
        "exclude",
        "use_gitignore",
        "debounce_ms",
        "ports",
        "remote",
        "remote_host",
        "machine",
        "reverse",
        "jobs",
        "env",
        "snapshot",
        "debug",
        "remote_port",
        "gpu",
        "streams",
        "memory_fraction",
        "unknown_key",
        "PATH",
        "1x",
    ]
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
DOCS = st.dictionaries(KEYS, VALUES, max_size=6)


def _either(valid: object) -> st.SearchStrategy[object]:
    """Mostly the valid value, sometimes anything: near-valid files reach every validator."""
    return st.one_of(st.just(valid), st.just(valid), st.just(valid), SCALARS)


NEAR_VALID = st.fixed_dictionaries(
    {
        "project": st.fixed_dictionaries(
            {"default_machine": _either("local")}, optional={"name": _either("vma")}
        ),
        "machines": st.fixed_dictionaries(
            {},
            optional={
                "local": st.fixed_dictionaries(
                    {},
                    optional={
                        "port": _either(2222),
                        "server_alive_interval": _either(60),
                        "server_alive_count_max": _either(10),
                        "compression": _either(True),
                    },
                ),
                "box": st.fixed_dictionaries(
                    {"kind": _either("ssh"), "host": _either("203.0.113.7")},
                    optional={"port": _either(22), "host_key": _either(KEY)},
                ),
            },
        ),
        "sync": st.fixed_dictionaries(
            {},
            optional={
                "remote_dir": _either("~/work/x"),
                "use_gitignore": _either(True),
                "debounce_ms": _either(30),
                "exclude": _either(["*.ckpt"]),
            },
        ),
        "jobs": st.fixed_dictionaries(
            {}, optional={"snapshot": _either(True), "env": _either({"A": "1"})}
        ),
    }
)


def _toml_value(value: object) -> str:
    import json
    import math

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"


def _toml(doc: dict[str, object]) -> str:
    lines = []
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f'["{key}"]')
            lines += [f'"{k}" = {_toml_value(v)}' for k, v in value.items()]
        else:
            lines.insert(0, f'"{key}" = {_toml_value(value)}')
    return "\n".join(lines) + "\n"


def _check_text(text: str) -> None:
    try:
        load_config_text(text, "orch.toml", "/p")
    except ConfigError as exc:
        assert exc.problems and all(p.message for p in exc.problems), text
        assert "Traceback" not in str(exc)


@settings(max_examples=TOML_CASES, deadline=None, derandomize=True, database=None)
@given(doc=DOCS)
def test_orch_toml_fuzz_structured_documents_load_or_list_their_problems(
    doc: dict[str, object],
) -> None:
    _check_text(_toml(doc))


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(doc=NEAR_VALID, ports=st.lists(st.dictionaries(KEYS, SCALARS, max_size=4), max_size=3))
def test_orch_toml_fuzz_near_valid_documents_load_or_list_their_problems(
    doc: dict[str, object], ports: list[dict[str, object]]
) -> None:
    text = _toml(doc)
    for entry in ports:  # [[ports]] tables, each key possibly of the wrong type
        text += "\n[[ports]]\n" + "".join(f'"{k}" = {_toml_value(v)}\n' for k, v in entry.items())
    try:
        load_config_text(text, "orch.toml", "/p")
    except ConfigError as exc:  # a well-formed file: every problem points at its line
        assert exc.problems and all(p.line and p.message for p in exc.problems), str(exc)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(text=st.text(max_size=200))
def test_orch_toml_fuzz_arbitrary_text_loads_or_lists_its_problems(text: str) -> None:
    _check_text(text)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(doc=DOCS)
def test_orch_toml_fuzz_through_the_cli_exits_0_or_3(sandbox: Path, doc: dict) -> None:
    folder = sandbox.parent / "fuzz-toml"
    folder.mkdir(exist_ok=True)
    (folder / "orch.toml").write_text(_toml(doc))
    code, _out, err = run_cli(["-C", str(folder), "config", "show", "--json"])
    assert code in (0, EXIT_CONFIG), (code, err)
    assert "Traceback" not in err and "internal error" not in err
    if code:
        assert "orch.toml" in err
