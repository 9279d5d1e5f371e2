"""`orch.toml` as a language: the sidecar checks the file as it is typed and helps write it.

- Diagnostics on open and on every change: the problems `orch` itself reports (the same
  messages, from remote_config.loader), each at its line and column.
- Completion (tables, keys, values) and hover (what a key means, its type and default) from
  the config's JSON Schema (remote_config.schema_help).
- When the file changes on disk (saved, or edited outside the editor) the project config is
  read anew and the status watcher looks again, so `orch/status` says at once whether
  orch.toml has errors and commands use the new file.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import from_fs_path, to_fs_path

from sidecar.server.core import OrchServer

if TYPE_CHECKING:
    from remote_config.loader import ConfigProblem

# The config loader builds orch.toml's pydantic models at import: it is imported when the
# first orch.toml is checked, not at start (`initialize` answers without it).
CONFIG_NAME = "orch.toml"  # remote_config.loader.CONFIG_NAME (a test checks they agree)

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[^\s=\[\]]+")
_KINDS = {
    "key": types.CompletionItemKind.Property,
    "value": types.CompletionItemKind.Value,
    "table": types.CompletionItemKind.Module,
}


def is_config(uri: str) -> bool:
    path = to_fs_path(uri)
    return path is not None and Path(path).name == CONFIG_NAME


def problems_of(text: str, file: str) -> list[ConfigProblem]:
    from remote_config.loader import ConfigError, load_config_text

    try:
        load_config_text(text, file, str(Path(file).parent))
    except ConfigError as exc:
        return exc.problems
    return []


def diagnostic(problem: ConfigProblem, lines: list[str]) -> types.Diagnostic:
    """The problem as a diagnostic over the key (or token) it names, else the whole line."""
    line = max((problem.line or 1) - 1, 0)
    text = lines[line] if line < len(lines) else ""
    start = max((problem.column or 1) - 1, 0)
    token = _TOKEN.match(text, start) if problem.column else None
    if token:
        end = token.end()
    elif problem.column:  # past the last token (a missing `]`): point at that place
        start = end = min(start, len(text))
    else:
        start, end = len(text) - len(text.lstrip()), max(len(text), 1)
    return types.Diagnostic(
        range=types.Range(
            start=types.Position(line=line, character=start),
            end=types.Position(line=line, character=end),
        ),
        message=problem.text,
        severity=types.DiagnosticSeverity.Error,
        source="orch",
    )


def diagnostics(text: str, file: str) -> list[types.Diagnostic]:
    lines = text.splitlines()
    return [diagnostic(p, lines) for p in problems_of(text, file)]


def register(server: OrchServer) -> None:
    schema: dict[str, Any] = {}

    def the_schema() -> dict[str, Any]:
        if not schema:
            schema.update(server.orch.config_schema())
        return schema

    def publish(uri: str, text: str | None = None) -> None:
        path = to_fs_path(uri)
        if path is None:
            return
        if text is None:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                text = ""
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics(text, path))
        )

    def reread() -> None:
        server.orch.forget_config()
        server.changed()

    def check_open(uri: str) -> None:
        if is_config(uri):
            publish(uri, server.workspace.get_text_document(uri).source)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(server: OrchServer, params: types.DidOpenTextDocumentParams) -> None:
        check_open(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(server: OrchServer, params: types.DidChangeTextDocumentParams) -> None:
        check_open(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(server: OrchServer, params: types.DidSaveTextDocumentParams) -> None:
        if is_config(params.text_document.uri):
            reread()

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(server: OrchServer, params: types.DidCloseTextDocumentParams) -> None:
        if is_config(params.text_document.uri):
            publish(params.text_document.uri)  # what is on disk is what commands use

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def watched(server: OrchServer, params: types.DidChangeWatchedFilesParams) -> None:
        changed = [c for c in params.changes if is_config(c.uri)]
        if not changed:
            return
        reread()
        for change in changed:
            if change.uri in server.workspace.text_documents:
                continue  # the editor's text is checked as it changes
            if change.type == types.FileChangeType.Deleted:
                server.text_document_publish_diagnostics(
                    types.PublishDiagnosticsParams(uri=change.uri, diagnostics=[])
                )
            else:
                publish(change.uri)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=["[", "=", "."]),
    )
    def completion(
        server: OrchServer, params: types.CompletionParams
    ) -> types.CompletionList | None:
        if not is_config(params.text_document.uri):
            return None
        from remote_config.schema_help import complete

        document = server.workspace.get_text_document(params.text_document.uri)
        found = complete(
            the_schema(), document.source, params.position.line, params.position.character
        )
        return types.CompletionList(
            is_incomplete=False,
            items=[
                types.CompletionItem(
                    label=s.label,
                    kind=_KINDS[s.kind],
                    detail=s.detail,
                    documentation=types.MarkupContent(
                        kind=types.MarkupKind.Markdown, value=s.documentation
                    ),
                    insert_text=s.insert,
                )
                for s in found
            ],
        )

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def on_hover(server: OrchServer, params: types.HoverParams) -> types.Hover | None:
        if not is_config(params.text_document.uri):
            return None
        from remote_config.schema_help import hover

        document = server.workspace.get_text_document(params.text_document.uri)
        text = hover(the_schema(), document.source, params.position.line, params.position.character)
        if text is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))

    def check_project_file() -> None:
        """At start: the project's orch.toml on disk, open in the editor or not."""
        from sidecar.config import find_config

        found = find_config(server.orch.cwd)
        uri = from_fs_path(str(found)) if found else None
        if uri and uri not in server.workspace.text_documents:
            publish(uri)

    server.check_config_file = check_project_file
