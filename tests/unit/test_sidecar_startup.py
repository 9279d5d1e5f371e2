"""The language server's start path stays light (issue 20, item 4): building the server and
answering `initialize` must not import pydantic, the command areas, the facade, the result
models, orch.toml's models or asyncssh; they load at `initialized` or the first command or
status read (bench/sidecar.py measures the time)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "sidecar.app",
    "sidecar.results",
    "remote_config.model",
    "remote_config.loader",
    "asyncssh",
)


def test_building_the_server_and_initialize_import_none_of_the_heavy_modules() -> None:
    code = (
        "import json, sys\n"
        "from lsprotocol import types\n"
        "from sidecar.server import build_server\n"
        "server = build_server()\n"
        "server.open_project(types.InitializeParams(capabilities=types.ClientCapabilities(),"
        " initialization_options={'machine': 'box', 'logLevel': 'debug'}))\n"
        "assert server.options.machine == 'box'\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_the_config_file_name_matches_the_loaders() -> None:
    from remote_config.loader import CONFIG_NAME
    from sidecar.server import config_doc

    assert config_doc.CONFIG_NAME == CONFIG_NAME


async def test_a_lazily_built_parameter_model_validates_at_the_first_request() -> None:
    from pygls.exceptions import JsonRpcInvalidParams

    from sidecar.server.core import OrchServer, Params, Report

    built: list[int] = []

    class Late(Params):
        n: int

    def model() -> type[Params]:
        built.append(1)
        return Late

    server = OrchServer()

    @server.orch_command("orch.test.late", model, read_only=True)
    async def late(server: OrchServer, params: Late, report: Report) -> int:
        return params.n * 2

    assert built == []  # nothing built at registration
    run = server.raw_commands["orch.test.late"]
    assert await run([{"n": 21}], None) == 42
    with pytest.raises(JsonRpcInvalidParams, match=r"orch\.test\.late: extra"):
        await run([{"n": 1, "extra": True}], None)
    assert built == [1]  # built once


def test_initialize_advertises_exactly_the_commands_the_areas_register() -> None:
    from sidecar.server import COMMANDS, build_server

    server = build_server()
    advertised = set(server.protocol.fm.commands)
    assert advertised == set(COMMANDS) and len(COMMANDS) == len(set(COMMANDS))
    assert server.raw_commands == {}  # nothing loaded yet
    server.load_commands()
    server.load_commands()  # once
    assert set(server.raw_commands) == set(COMMANDS) == set(server.protocol.fm.commands)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ("info", None, None)),
        ({}, ("info", None, None)),
        (
            {"machine": "gpu", "logLevel": "debug", "clientName": "vscode"},
            ("debug", "gpu", "vscode"),
        ),
        ({"machine": None, "other": 1}, ("info", None, None)),  # unknown keys are ignored
    ],
)
def test_initialization_options(raw: object, expected: tuple) -> None:
    from sidecar.server.core import InitOptions

    o = InitOptions.parse(raw)
    assert (o.logLevel, o.machine, o.clientName) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1], "expected an object, got list"),
        ({"machine": 3}, "machine: expected a string or null, got 3"),
        ({"logLevel": None}, "logLevel: expected a string, got None"),
    ],
)
def test_malformed_initialization_options(raw: object, message: str) -> None:
    from sidecar.server.core import InitOptions

    with pytest.raises(ValueError) as caught:
        InitOptions.parse(raw)
    assert str(caught.value) == message
