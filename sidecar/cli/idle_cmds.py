"""`orch idle status` and `orch idle keep` (reset the idle timer: "Keep running")."""

from __future__ import annotations

import argparse

from sidecar.app import Orchestrator
from sidecar.cli import dispatch
from sidecar.cli.output import print_json
from sidecar.results import IdleStatus


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    idle = sub.add_parser("idle", help="the machine's idle stop: status, keep running")
    verbs = idle.add_subparsers(dest="verb", metavar="VERB", required=True)
    status = verbs.add_parser("status", help="how long the machine has been idle, when it stops")
    keep = verbs.add_parser("keep", help="reset the idle timer (keep the machine running)")
    for parser, handler in ((status, cmd_status), (keep, cmd_keep)):
        parser.add_argument("machine", nargs="?")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.set_defaults(handler=handler)


async def cmd_status(orch: Orchestrator, args: argparse.Namespace) -> int:
    status = await dispatch.call(orch, "idle_status", IdleStatus | None, args.machine)
    if args.json:
        print_json(status)
    elif status is None:
        print(f"{orch.machine_name(args.machine)}: no idle agent (idle stop and ttl are off)")
    else:
        print(f"{orch.machine_name(args.machine)}: {status.line}")
    return 0


async def cmd_keep(orch: Orchestrator, args: argparse.Namespace) -> int:
    status = await dispatch.call(orch, "idle_keep", IdleStatus | None, args.machine)
    if args.json:
        print_json(status)
    else:
        print(f"{orch.machine_name(args.machine)}: idle timer reset; the machine keeps running")
    return 0
