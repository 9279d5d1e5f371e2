"""`orch sync start|stop|status|now|resolve`: keep the remote copy of the project in step."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sidecar.app import Orchestrator
from sidecar.cli.output import print_json, table
from sidecar.results import SyncStatus


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sync = sub.add_parser("sync", help="sync the project folder to the machine")
    verbs = sync.add_subparsers(dest="verb", metavar="VERB", required=True)

    start = verbs.add_parser("start", help="initial sync, then watch and sync every change")
    start.add_argument("-m", "--machine", help="machine name (default: the project's default)")
    start.add_argument(
        "--foreground", action="store_true", help="watch in this terminal until Ctrl-C"
    )
    start.add_argument("--json", action="store_true", help="print the status as JSON")
    start.set_defaults(handler=cmd_start)

    for name, handler, text in (
        ("stop", cmd_stop, "stop watching"),
        ("status", cmd_status, "show the sync state, last sync, generation and conflicts"),
        ("now", cmd_now, "reconcile the whole tree now"),
    ):
        verb = verbs.add_parser(name, help=text)
        verb.add_argument("-m", "--machine")
        verb.add_argument("--json", action="store_true", help="print the status as JSON")
        verb.set_defaults(handler=handler)

    resolve = verbs.add_parser("resolve", help="forget conflicts you have dealt with")
    resolve.add_argument("paths", nargs="*", help="paths to forget (default: all)")
    resolve.add_argument("-m", "--machine")
    resolve.add_argument("--json", action="store_true")
    resolve.set_defaults(handler=cmd_resolve)


class ProgressBar:
    """A one-line progress bar on stderr (only on a terminal)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.last = -1

    def __call__(self, pct: int) -> None:
        if not self.enabled or pct == self.last:
            return
        self.last = pct
        filled = pct * 30 // 100
        sys.stderr.write(f"\r\x1b[2K{self.label} [{'#' * filled}{'.' * (30 - filled)}] {pct}%")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.last >= 0:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


def _show(status: SyncStatus, as_json: bool) -> None:
    if as_json:
        print_json(status)
        return
    owner = f"{status.owner} pid {status.owner_pid}" if status.owner_pid else "-"
    rows = [
        [
            status.machine,
            status.state,
            status.last_sync or "-",
            status.generation,
            status.watcher or "-",
            owner,
        ]
    ]
    print(table(["MACHINE", "STATE", "LAST SYNC", "GENERATION", "WATCHER", "OWNER"], rows))
    print(f"{status.local_dir} -> {status.remote_dir}")
    if status.detail:
        print(f"note: {status.detail}")
    if status.drift:
        shown = ", ".join(status.drift[:10]) + (" …" if len(status.drift) > 10 else "")
        print(
            f"{len(status.drift)} file(s) had changed on the machine behind orch's back at the "
            f"last full sync (kept beside as conflict copies): {shown}"
        )
    if status.conflicts:
        print(f"\n{len(status.conflicts)} conflict(s): the remote file had changed since orch")
        print("wrote it; your version is in place, the remote's was saved beside it:")
        print(
            table(
                ["PATH", "REMOTE COPY", "AT"],
                [[c.path, c.remote_copy, c.at] for c in status.conflicts],
            )
        )
        print("when dealt with: orch sync resolve [PATH...]")


async def _with_bar(label: str, call: Callable[[ProgressBar], object]) -> SyncStatus:
    bar = ProgressBar(label)
    try:
        result = await call(bar)  # type: ignore[misc]
    finally:
        bar.done()
    assert isinstance(result, SyncStatus)
    return result


async def cmd_start(orch: Orchestrator, args: argparse.Namespace) -> int:
    if args.foreground:
        bar = ProgressBar("initial sync")
        machine = orch.machine_name(args.machine)

        def ready(status: SyncStatus) -> None:
            bar.done()
            mode = f" ({status.watcher})" if status.watcher else ""
            print(
                f"watching {status.local_dir} -> {machine}:{status.remote_dir}{mode}; Ctrl-C stops",
                flush=True,
            )
            if status.detail and status.watcher == "polling":
                print(f"note: {status.detail}", file=sys.stderr, flush=True)

        status = await orch.sync_start(
            foreground=True, machine=args.machine, progress=bar, ready=ready
        )
        _show(status, args.json)
        return 0
    status = await _with_bar(
        "initial sync", lambda bar: orch.sync_start(machine=args.machine, progress=bar)
    )
    if not args.json:
        print(
            f"sync started in the background (pid {status.owner_pid}); "
            "`orch sync status` shows it, `orch sync stop` stops it"
        )
    _show(status, args.json)
    return 0


async def cmd_stop(orch: Orchestrator, args: argparse.Namespace) -> int:
    _show(await orch.sync_stop(args.machine), args.json)
    return 0


async def cmd_status(orch: Orchestrator, args: argparse.Namespace) -> int:
    _show(await orch.sync_status(args.machine), args.json)
    return 0


async def cmd_now(orch: Orchestrator, args: argparse.Namespace) -> int:
    status = await _with_bar("sync", lambda bar: orch.sync_now(args.machine, progress=bar))
    _show(status, args.json)
    return 0


async def cmd_resolve(orch: Orchestrator, args: argparse.Namespace) -> int:
    _show(await orch.sync_resolve(args.paths, args.machine), args.json)
    return 0
