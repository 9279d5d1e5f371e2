"""orch.toml as a language, against the real sidecar: diagnostics (the CLI's messages at their
line and column) when the project starts, on open and on every change; completion and hover
from the config's JSON Schema; and the status saying "orch.toml has errors" once the file on
disk breaks, then recovering when it is fixed. No machine is started."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.lsp.helpers import execute, module_home, status_notifications, wait_for_status

# One orch.toml's life in order (broken on disk at start, fixed, broken again, typed in):
# pytest-random-order shuffles this module among the others but keeps its steps in order.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.random_order(disabled=True)]

HOME = module_home("config")
PROJECT = HOME / "project"
CONFIG = PROJECT / "orch.toml"
URI = CONFIG.as_uri()

# Line 5 (1-based) holds a misspelt key; the CLI says so with "did you mean".
BROKEN_ON_DISK = """\
[project]
name = "demo"

[machines.gpu]
kind = "ssh"
hots = "10.0.0.5"
"""
GOOD = """\
[project]
name = "demo"

[machines.gpu]
kind = "ssh"
host = "10.0.0.5"
"""


@pytest_lsp.fixture(
    scope="module",
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "sidecar"],
        server_env={**os.environ, "ORCH_HOME": str(HOME / "orch-home")},
    ),
)
async def client(lsp_client: LanguageClient):
    shutil.rmtree(HOME, ignore_errors=True)
    PROJECT.mkdir(parents=True)
    CONFIG.write_text(BROKEN_ON_DISK)
    status_notifications(lsp_client)
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            root_uri=PROJECT.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=PROJECT.as_uri(), name="project")],
            initialization_options={"logLevel": "info", "clientName": "pytest"},
        )
    )
    yield
    await lsp_client.shutdown_session()
    shutil.rmtree(HOME, ignore_errors=True)


async def _diagnostics(
    client: LanguageClient, test: object = None, timeout: float = 10.0
) -> Sequence[types.Diagnostic]:
    """The latest diagnostics for orch.toml once `test(diagnostics)` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = client.diagnostics.get(URI)
        if found is not None and (test is None or test(found)):  # type: ignore[operator]
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no matching diagnostics in {timeout}s; last: {found}")
        await asyncio.sleep(0.05)


def _cli_lines(text: str) -> list[str]:
    """What `orch config show` prints about the file (the CLI's own messages)."""
    assert (Path(sys.executable).parent / "orch").exists()
    folder = HOME / "cli"
    folder.mkdir(exist_ok=True)
    (folder / "orch.toml").write_text(text)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "orch"), "config", "show"],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, "ORCH_HOME": str(HOME / "orch-home")},
        timeout=60,
    )
    assert result.returncode != 0
    return result.stderr.splitlines()


def _change(client: LanguageClient, version: int, text: str) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


async def test_a_broken_file_on_disk_is_reported_at_start(client: LanguageClient) -> None:
    found = await _diagnostics(client, lambda d: len(d) == 2)
    missing, diagnostic = sorted(found, key=lambda d: d.range.start.line)
    # `host` is missing: said at the machine's table header.
    assert missing.range.start == types.Position(line=3, character=1)
    assert missing.message == "machines.gpu.host: required field is missing"
    assert diagnostic.range.start == types.Position(line=5, character=0)
    assert diagnostic.range.end == types.Position(line=5, character=4)  # the key `hots`
    assert diagnostic.message == "machines.gpu.hots: unknown key 'hots'; did you mean 'host'?"
    assert diagnostic.severity == types.DiagnosticSeverity.Error
    # The CLI says the same thing, with the file and line in front.
    assert any(
        line.endswith(f"orch.toml:6: {diagnostic.message}") for line in _cli_lines(BROKEN_ON_DISK)
    )


async def test_status_says_the_file_has_errors_then_recovers(client: LanguageClient) -> None:
    status = await execute(client, "orch.status", {"fresh": True})
    assert status["machine"]["detail"] == "orch.toml has errors"
    problems = {(p["line"], p["column"], p["path"]) for p in status["config"]["problems"]}
    assert problems == {(4, 2, "machines.gpu.host"), (6, 1, "machines.gpu.hots")}
    # Commands refuse with the problems attached, for the editor to point at them.
    with pytest.raises(Exception) as failed:
        await execute(client, "orch.machine.status", {})
    assert "hots" in str(failed.value)

    CONFIG.write_text(GOOD)
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[types.FileEvent(uri=URI, type=types.FileChangeType.Changed)]
        )
    )
    pushed = await wait_for_status(
        client, lambda s: s["config"]["file"] == str(CONFIG) and not s["config"]["problems"]
    )
    assert pushed["machine"]["name"] == "local"
    assert not await _diagnostics(client, lambda d: not d)

    # Broken again while the sidecar runs: the status says so at once (no stale config).
    CONFIG.write_text(GOOD.replace('kind = "ssh"', 'kind = "sssh"'))
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[types.FileEvent(uri=URI, type=types.FileChangeType.Changed)]
        )
    )
    broken = await wait_for_status(
        client, lambda s: any(p["line"] == 5 for p in s["config"]["problems"])
    )
    assert broken["machine"]["detail"] == "orch.toml has errors"
    CONFIG.write_text(GOOD)
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            changes=[types.FileEvent(uri=URI, type=types.FileChangeType.Changed)]
        )
    )
    assert not await _diagnostics(client, lambda d: not d)


async def test_diagnostics_follow_the_text_as_it_is_typed(client: LanguageClient) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=URI, language_id="toml", version=1, text=GOOD + "[sync]\nremote_dir = 5\n"
            )
        )
    )
    (diagnostic,) = await _diagnostics(client, lambda d: len(d) == 1 and "sync" in d[0].message)
    assert diagnostic.range.start == types.Position(line=7, character=0)
    assert diagnostic.message.startswith("sync.remote_dir: Input should be a valid string")

    _change(client, 2, GOOD)
    assert not await _diagnostics(client, lambda d: not d)

    _change(client, 3, "[project\nname = 1\n")  # a TOML syntax error, at its column
    (syntax,) = await _diagnostics(client, lambda d: len(d) == 1)
    assert syntax.range.start == types.Position(line=0, character=8)
    assert syntax.message.startswith("invalid TOML: ")

    _change(client, 4, GOOD)
    assert not await _diagnostics(client, lambda d: not d)
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=URI))
    )


async def _open(client: LanguageClient, text: str, version: int) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=URI, language_id="toml", version=version, text=text
            )
        )
    )


async def test_completion_offers_keys_values_and_tables_from_the_schema(
    client: LanguageClient,
) -> None:
    text = '[machines.gpu]\nkind = "ssh"\n\n[sync]\n\n'
    await _open(client, text, 10)

    async def labels(line: int, character: int) -> list[str]:
        result = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=URI),
                position=types.Position(line=line, character=character),
            )
        )
        assert isinstance(result, types.CompletionList)
        return [item.label for item in result.items]

    machine_keys = await labels(2, 0)
    assert {"host", "port", "user", "identity_file"} <= set(machine_keys)
    assert "kind" not in machine_keys  # already there
    assert "instance_type" not in machine_keys  # an ec2 key, not an ssh one
    assert {"remote_dir", "exclude"} <= set(await labels(4, 0))

    _change(client, 11, "[machines.gpu]\nkind = \n")
    assert set(await labels(1, 7)) == {'"local"', '"ssh"', '"ec2"', '"codespaces"'}
    _change(client, 12, "[")
    assert {"project", "sync", "jobs", "debug", "ports"} <= set(await labels(0, 1))
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=URI))
    )


async def test_hover_explains_a_key(client: LanguageClient) -> None:
    await _open(client, GOOD, 20)
    hover = await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            position=types.Position(line=5, character=1),  # on `host`
        )
    )
    assert hover is not None
    assert isinstance(hover.contents, types.MarkupContent)
    assert "**host** (string)" in hover.contents.value
    assert "Host name or address." in hover.contents.value
    nothing = await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            position=types.Position(line=2, character=0),  # an empty line
        )
    )
    assert nothing is None
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=URI))
    )


async def test_an_expected_error_carries_its_action_and_logs_no_traceback(
    client: LanguageClient, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    with pytest.raises(JsonRpcException) as failed:
        await execute(client, "orch.jobs.run", {"name": "nope", "command": "true"})
    assert failed.value.message == "the local machine is not running"
    assert failed.value.data == {
        "kind": "MachineNotRunning",
        "hint": "start it: orch up",
        "action": "machine.up",
        "target": "local",
    }
    await asyncio.sleep(0.3)  # the server's log line crosses a pipe
    # Hosted in the agent, the window's log lines come as window/logMessage (the extension
    # shows them in the Orch output, as it shows a server's stderr).
    messages = "\n".join(m.message for m in client.log_messages)
    logged = capfd.readouterr().err + messages
    assert "orch.jobs.run: the local machine is not running" in logged
    assert "Traceback" not in logged
