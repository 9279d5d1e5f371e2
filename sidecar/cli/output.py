"""Terminal output for the CLI: tables, JSON, errors, and a progress spinner for slow steps."""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from sidecar.results import DebugSession


def print_json(value: Any) -> None:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    print(json.dumps(value, indent=2, sort_keys=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def error(message: str, hint: str | None = None) -> None:
    print(f"orch: error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def failed(exc: BaseException) -> int:
    """Say why a command ended early, as every `orch` command does; its exit code. (The
    fast paths and `run_handler` share it; `ORCH_DEBUG=1`'s re-raise stays with them.)"""
    from sidecar.errors import EXIT_FAILED, EXIT_INTERRUPTED, OrchError

    if isinstance(exc, OrchError):
        error(exc.message, exc.hint)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        print("orch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not isinstance(exc, BrokenPipeError):
        error(
            f"internal error: {type(exc).__name__}: {exc}",
            "this is a bug in orch; rerun with ORCH_DEBUG=1 for a traceback and report it",
        )
    return EXIT_FAILED


class Spinner:
    """A stderr spinner that appears only if the step takes longer than `delay` seconds."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        self.message = message
        self.delay = delay
        self.enabled = sys.stderr.isatty()
        self._task: asyncio.Task[None] | None = None
        self._shown = False

    def update(self, message: str) -> None:
        self.message = message

    async def _run(self) -> None:
        import asyncio  # (here: the CLI's light paths print with this module, no event loop)

        await asyncio.sleep(self.delay)
        started = time.monotonic() - self.delay
        for frame in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
            self._shown = True
            elapsed = time.monotonic() - started
            sys.stderr.write(f"\r\x1b[2K{frame} {self.message} ({elapsed:.1f}s)")
            sys.stderr.flush()
            await asyncio.sleep(0.1)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Spinner]:
        import asyncio

        if self.enabled:
            self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                if self._shown:
                    sys.stderr.write("\r\x1b[2K")
                    sys.stderr.flush()


def print_session(session: DebugSession) -> None:
    print(
        f"job {session.name} waits for a debugger: debugpy on the machine's "
        f"127.0.0.1:{session.remote_port}, forwarded to 127.0.0.1:{session.local_port}"
    )
    print(
        f"  VS Code: Run and Debug → “Orch: attach {session.name}” "
        f"(write it with: orch debug config {session.name})"
    )
    print(
        f"  path mapping: {session.configuration['pathMappings'][0]['localRoot']} → "
        f"{session.remote_root}"
    )
