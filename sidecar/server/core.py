"""The language server object and the plumbing every command shares.

`OrchServer` is a pygls `LanguageServer` holding one Orchestrator. Commands are registered
with `OrchServer.orch_command(name, Params)`: the first element of `arguments` is validated
by the pydantic model (a JSON-RPC InvalidParams error says what is wrong), the handler gets
the model and a progress reporter, its result is sent as `model_dump(mode="json")`, and an
OrchError becomes a JSON-RPC error whose `data` carries `kind` and `hint` (docs/protocol.md).

`workspace/executeCommand` is dispatched here rather than by pygls' generic handler so that
the handler runs as the request's own asyncio task (so `$/cancelRequest` really cancels it)
and sees the request's `workDoneToken` (so it can report `$/progress`).

A server is either the process's own (`python -m sidecar` with `ORCH_NO_AGENT=1` or
`ORCH_LSP_HOSTED=0`) or one of many hosted in the orch agent, one per VS Code window
(`sidecar.agent.lsp_host`, given as `host`): the host supplies the project's Orchestrator
(the agent's own, on its one connection pool), the window's working folder, a bound per
command, the window's log level, and what `exit` does (end this window's connection, not
the process).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcMethodNotFound
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method
from pygls.uris import to_fs_path

from sidecar import __version__
from sidecar.errors import ConfigFileError, OrchError

if TYPE_CHECKING:
    # Imported after the `initialize` reply, not at start: pydantic and the commands'
    # parameter models (with the command areas), the facade and the result models (at the
    # first command or status read). The reply waits only for pygls.
    from pydantic import BaseModel, ValidationError

    from sidecar.app import Orchestrator
    from sidecar.server.params import NoParams as NoParams
    from sidecar.server.params import Params as Params

log = logging.getLogger(__name__)

P = TypeVar("P", bound="BaseModel")


def __getattr__(name: str) -> Any:
    """`Params` and `NoParams` (pydantic models, in `sidecar.server.params`), loaded when a
    command area first asks for them."""
    if name in ("Params", "NoParams"):
        from sidecar.server import params

        return getattr(params, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Host(Protocol):
    """What the orch agent gives a language server it hosts (`sidecar.agent.lsp_host`)."""

    cwd: Path  # the bridge's working folder: the project when the client names no folder

    def orch(self, root: Path) -> Orchestrator:
        """The project's Orchestrator (shared by every window and the agent: never closed
        by a window)."""
        ...

    def timeout(self, command: str) -> float:
        """The longest `command` may run before it fails (so a stuck one frees its window)."""
        ...

    def set_level(self, level: int) -> None:
        """The window's log level (`initializationOptions.logLevel`)."""
        ...

    def status_watcher(self, server: OrchServer) -> Any:
        """The window's status watcher (`sidecar.server.status.LazyWatcher`'s inner)."""
        ...

    def close(self) -> None:
        """The window said `exit`: end its connection (the agent goes on)."""
        ...


class Report(Protocol):
    """Reports one step of a long command as `$/progress` (a no-op without a token)."""

    def __call__(self, message: str, percentage: int | None = None) -> None: ...


Handler = Callable[["OrchServer", Any, Report], Awaitable[Any]]
RawCommand = Callable[[list[Any], types.ProgressToken | None], Awaitable[Any]]


@dataclass
class InitOptions:
    """`initializationOptions` the extension sends (read once at start; the wire names are
    camelCase). Checked by hand: `initialize` is answered before pydantic is imported."""

    machine: str | None = None
    logLevel: str = "info"
    clientName: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> InitOptions:
        """The options in `raw` (unknown keys ignored); ValueError says what is malformed."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError(f"expected an object, got {type(raw).__name__}")
        values: dict[str, str | None] = {}
        for key, nullable in (("machine", True), ("logLevel", False), ("clientName", True)):
            if key not in raw:
                continue
            value = raw[key]
            if not (isinstance(value, str) or (nullable and value is None)):
                kind = "a string or null" if nullable else "a string"
                raise ValueError(f"{key}: expected {kind}, got {value!r}")
            values[key] = value
        return cls(**values)  # type: ignore[arg-type]


class OrchRequestError(JsonRpcException):
    """An OrchError on its way to the client: an expected failure, logged in one line."""

    def __init__(self, command: str, exc: OrchError) -> None:
        from sidecar.results import ConfigProblemInfo, ErrorData

        data = ErrorData(kind=exc.kind, hint=exc.hint, action=exc.action, target=exc.target)
        if isinstance(exc, ConfigFileError):
            data.problems = [
                ConfigProblemInfo(
                    file=p.file, line=p.line, column=p.column, path=p.path, message=p.message
                )
                for p in exc.problems
            ]
        super().__init__(
            message=exc.message,
            code=exc.exit_code,
            data=data.model_dump(mode="json", exclude_none=True),
        )
        self.command = command


def orch_error(exc: OrchError, command: str = "") -> OrchRequestError:
    """An orch error as a JSON-RPC error: code = the CLI's exit code for its family."""
    return OrchRequestError(command, exc)


def invalid_params(command: str, exc: ValidationError) -> JsonRpcInvalidParams:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
        for err in exc.errors()
    )
    return JsonRpcInvalidParams(message=f"{command}: {problems}")


@functools.cache
def _message_types(method: str) -> tuple[Any, Any]:
    found = types.METHOD_TO_TYPES.get(method, (None, None))
    return found[0], found[1]


class OrchProtocol(LanguageServerProtocol):
    # pygls caches these two with `lru_cache` on the method, whose global cache keys hold
    # `self`: it would keep the last ~20 protocols (hosted windows long closed) alive.
    def get_message_type(self, method: str) -> Any:  # type: ignore[override]
        return _message_types(method)[0]

    def get_result_type(self, method: str) -> Any:  # type: ignore[override]
        return _message_types(method)[1]

    def _send_handler_result(self, future: Any, *, msg_id: Any) -> None:
        # pygls logs every failed request with a traceback at ERROR; an OrchError is an
        # expected outcome (the machine is not running…): one line, no traceback.
        if not future.cancelled() and isinstance(future.exception(), OrchRequestError):
            exc: OrchRequestError = future.exception()
            self._request_futures.pop(msg_id, None)
            log.warning("%s: %s", exc.command or "request", exc.message)
            self._send_response(msg_id, error=exc.to_response_error())
            return
        super()._send_handler_result(future, msg_id=msg_id)

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any) -> Generator[Any, Any, None]:
        host = self._server.host  # type: ignore[attr-defined]
        if host is None:  # the process's own server: pygls ends the process
            yield from super().lsp_exit(*args)
            return
        host.close()  # a hosted one: only this window's connection ends, never the agent

    # An async override of pygls' generator on purpose (see the module docstring).
    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    async def lsp_workspace__execute_command(  # type: ignore[override]
        self, params: types.ExecuteCommandParams
    ) -> Any:
        server: OrchServer = self._server  # type: ignore[assignment]
        server.load_commands()  # at once, if a client asks before `initialized`
        command = server.raw_commands.get(params.command)
        if command is None:
            raise JsonRpcMethodNotFound(message=f"unknown command {params.command!r}")
        return await command(list(params.arguments or []), params.work_done_token)


class OrchServer(LanguageServer):
    def __init__(self, host: Host | None = None) -> None:
        super().__init__(
            "orch-sidecar",
            __version__,
            protocol_cls=OrchProtocol,
            # The only documents synced are orch.toml files: a few hundred bytes, so the whole
            # text on each change is simplest and cannot drift from the editor's.
            text_document_sync_kind=types.TextDocumentSyncKind.Full,
        )
        self.host = host
        self.raw_commands: dict[str, RawCommand] = {}
        self._orch: Orchestrator | None = None
        self._root: Path | None = None  # the client's workspace folder (set at initialize)
        self.options = InitOptions()
        # Called after every command that may have changed state (set by the status area).
        self.changed: Callable[[], None] = lambda: None
        # Publishes the project's orch.toml problems (set by the config_doc area).
        self.check_config_file: Callable[[], None] = lambda: None
        # Registers the command areas, once (set by `build_server`; see its module).
        self.load_commands: Callable[[], None] = lambda: None
        # Ends the areas' background work: status watch, log follows (set by `build_server`).
        self.stop_areas: Callable[[], Awaitable[None]] = _nothing

    def advertise(self, names: tuple[str, ...]) -> None:
        """Names commands in the `initialize` reply before their areas are loaded."""
        for name in names:
            if name not in self.protocol.fm.commands:
                self.command(name)(_placeholder(name))

    @property
    def has_orch(self) -> bool:
        """Whether this server built an Orchestrator of its own, to close at shutdown (a
        hosted one uses the agent's, which outlives the window)."""
        return self._orch is not None

    @property
    def root(self) -> Path:
        """The project folder: the client's workspace folder, else the working folder."""
        if self._root is not None:
            return self._root
        return self.host.cwd if self.host is not None else Path(os.getcwd())

    @property
    def orch(self) -> Orchestrator:
        if self.host is not None:
            return self.host.orch(self.root)
        if self._orch is None:
            from sidecar.app import Orchestrator

            self._orch = Orchestrator(cwd=self.root)
        return self._orch

    @property
    def via_agent(self) -> bool:
        """Whether commands that need a connection are sent to the orch agent (the default
        for the process's own server), not run here (`ORCH_NO_AGENT=1`, or a server hosted
        in the agent, which runs them on the agent's own objects): see
        `Orchestrator.agent_call`."""
        return self.host is None and self.orch.agent_enabled()

    def open_project(self, params: types.InitializeParams) -> None:
        """Opens the client's workspace folder, with its options; the Orchestrator is built
        there at its first use (after the `initialize` reply)."""
        root: str | None = None
        if params.workspace_folders:
            root = to_fs_path(params.workspace_folders[0].uri)
        elif params.root_uri:
            root = to_fs_path(params.root_uri)
        try:
            self.options = InitOptions.parse(params.initialization_options)
        except ValueError as exc:
            log.warning("ignoring malformed initializationOptions: %s", exc)
        self._root = Path(root) if root else None
        self._orch = None

    def orch_command(
        self, name: str, model: type[P] | Callable[[], type[P]], *, read_only: bool = False
    ) -> Callable[[Handler], Handler]:
        """Registers `handler(server, params, report)` as the command `name` (a command that
        is not `read_only` makes the status watcher look again at once). `model` may be a
        function returning the parameters' model, called at the first request: for a model
        whose import would slow the start."""

        resolved: list[type[BaseModel]] = []
        factory: Callable[[], type[P]] | None = None
        if isinstance(model, type):
            resolved.append(model)
        else:
            factory = model

        def decorator(handler: Handler) -> Handler:
            async def run(arguments: list[Any], token: types.ProgressToken | None) -> Any:
                from pydantic import BaseModel, ValidationError

                if factory is not None and not resolved:
                    resolved.append(factory())
                raw = arguments[0] if arguments else {}
                if len(arguments) > 1 or not isinstance(raw, dict):
                    raise JsonRpcInvalidParams(
                        message=f"{name}: pass the arguments as one JSON object"
                    )
                try:
                    parsed = resolved[0].model_validate(raw)
                except ValidationError as exc:
                    raise invalid_params(name, exc) from None
                with self.progress_scope(name, token) as report:
                    try:
                        result = await self._bounded(name, handler(self, parsed, report))
                    except OrchError as exc:
                        raise orch_error(exc, name) from None
                    finally:
                        if not read_only:
                            self.changed()
                return result.model_dump(mode="json") if isinstance(result, BaseModel) else result

            self.raw_commands[name] = run
            # Registered with pygls too, so `initialize` advertises it to the client.
            self.advertise((name,))
            return handler

        return decorator

    async def _bounded(self, name: str, work: Awaitable[Any]) -> Any:
        """`work`, within the host's bound for `name` (hosted in the agent, a stuck command
        must not hold its window's resources forever); unbounded in the process's own."""
        if self.host is None:
            return await work
        bound = self.host.timeout(name)
        try:
            async with asyncio.timeout(bound):
                return await work
        except TimeoutError:
            raise OrchError(
                f"{name} did not finish within {bound:g} s in the orch agent",
                hint="see the agent's log (`orch agent info` names it) and try again",
            ) from None

    def progress_scope(self, title: str, token: types.ProgressToken | None) -> _Progress:
        return _Progress(self, title, token)


async def _nothing() -> None:
    return None


def _placeholder(name: str) -> Callable[..., Awaitable[None]]:
    async def dispatched_by_orch_protocol(*_: Any) -> None:  # pragma: no cover
        raise JsonRpcMethodNotFound(message=f"{name} is dispatched by OrchProtocol")

    return dispatched_by_orch_protocol


class _Progress:
    """`$/progress` begin/report/end around one command, when the client passed a token."""

    def __init__(self, server: OrchServer, title: str, token: types.ProgressToken | None) -> None:
        self.server = server
        self.title = title
        self.token = token

    def report(self, message: str, percentage: int | None = None) -> None:
        if self.token is not None:
            self.server.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message, percentage=percentage)
            )

    def __enter__(self) -> Report:
        if self.token is not None:
            self.server.work_done_progress.begin(
                self.token, types.WorkDoneProgressBegin(title=self.title, cancellable=True)
            )
        return self.report

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            self.server.work_done_progress.end(self.token, types.WorkDoneProgressEnd())
            self.server.work_done_progress.tokens.pop(self.token, None)
