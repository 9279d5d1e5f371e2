"""`orch backend init NAME` and `orch backend destroy NAME`: a cloud backend's resources."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sidecar.app import Orchestrator
from sidecar.cli.output import print_json, table
from sidecar.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backend = sub.add_parser("backend", help="create or remove what a job backend needs")
    verbs = backend.add_subparsers(dest="verb", metavar="VERB", required=True)
    init = verbs.add_parser(
        "init",
        help="create, idempotently and tagged, the backend's cluster, log group, roles, "
        "bucket and queues; prints what it made and its cost at rest",
    )
    init.add_argument("name", help="the [backends.NAME] of orch.toml")
    init.add_argument("--json", action="store_true")
    init.set_defaults(handler=cmd_init)
    destroy = verbs.add_parser(
        "destroy", help="remove what init made (the bucket's code and outputs too)"
    )
    destroy.add_argument("name")
    destroy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    destroy.add_argument("--json", action="store_true")
    destroy.set_defaults(handler=cmd_destroy)

    queue = sub.add_parser(
        "queue",
        help="queue commands for worker tasks on a backend (--file F, or --each A B -- CMD {})",
        usage="orch queue NAME --on BACKEND (--file FILE | --each ARG... -- CMD {})",
    )
    queue.add_argument("name", help="names the items: NAME-00001, NAME-00002, ...")
    queue.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    queue.set_defaults(handler=cmd_queue)


def queues_table(queues: list[Any]) -> str:
    rows = [
        [q.backend, q.depth, q.in_flight, q.done, q.failed, f"{q.tasks_running}/{q.tasks_desired}"]
        for q in queues
    ]
    return table(["QUEUE ON", "DEPTH", "IN FLIGHT", "DONE", "FAILED", "TASKS"], rows)


async def cmd_queue(orch: Orchestrator, args: argparse.Namespace) -> int:
    from pathlib import Path

    from remote_config.fargate_worker import items_from_each, items_from_lines

    opts = parse_queue_args(list(args.args))
    if opts["file"]:
        try:
            commands = items_from_lines(Path(opts["file"]).read_text().splitlines())
        except OSError as exc:
            raise UsageError(f"cannot read {opts['file']}: {exc.strerror}") from None
    else:
        try:
            commands = items_from_each(opts["each"], " ".join(opts["command"]))
        except ValueError as exc:
            raise UsageError(str(exc), hint=QUEUE_HINT) from None
    on = opts["on"]
    result = await orch.queue_submit(args.name, on, commands, machine=opts["machine"])
    if opts["json"]:
        print_json(result)
    else:
        print(
            f"queued {len(commands)} item(s) as {args.name}-00001..; workers: "
            f"{result.tasks_desired} task(s) wanted, scaling {args.on}'s service"
        )
        print(queues_table([result]))
    return 0


QUEUE_HINT = "orch queue NAME --on BACKEND --file commands.txt  |  --each a b c -- python x.py {}"


def _print(result: Any) -> None:
    rows = [[i.resource, i.name, i.action, i.cost_at_rest] for i in result.items]
    print(table(["RESOURCE", "NAME", "ACTION", "COST AT REST"], rows))


async def cmd_init(orch: Orchestrator, args: argparse.Namespace) -> int:
    result = await orch.backend_init(args.name)
    if args.json:
        print_json(result)
        return 0
    _print(result)
    print(
        f"backend {args.name} is ready in {result.region}; at rest it costs nothing but the "
        "logs and files it keeps. Run a job: orch run NAME --on "
        f"{args.name} -- CMD"
    )
    return 0


async def cmd_destroy(orch: Orchestrator, args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"orch backend destroy {args.name} deletes its bucket, logs, roles and queues",
                hint=f"confirm with: orch backend destroy {args.name} --yes",
            )
        answer = input(
            f"This deletes backend {args.name}'s bucket (code and outputs), logs, roles and "
            f"queues. Type {args.name} to confirm: "
        )
        if answer.strip() != args.name:
            print("nothing removed")
            return 1
    result = await orch.backend_destroy(args.name)
    if args.json:
        print_json(result)
    else:
        _print(result)
    return 0


def parse_queue_args(words: list[str]) -> dict[str, Any]:
    """`--on B`, `--file F`, `-m M`, `--json`, `--each ARG... -- CMD...` (argparse cannot split
    `--each`'s words from the command's own)."""
    opts: dict[str, Any] = {
        "on": None,
        "file": None,
        "machine": None,
        "json": False,
        "each": [],
        "command": [],
    }
    while words:
        word = words.pop(0)
        if word == "--json":
            opts["json"] = True
        elif word in ("--on", "--file", "-m", "--machine"):
            if not words:
                raise UsageError(f"{word} needs a value", hint=QUEUE_HINT)
            opts[{"--on": "on", "--file": "file"}.get(word, "machine")] = words.pop(0)
        elif word == "--each":
            while words and words[0] != "--":
                opts["each"].append(words.pop(0))
            if not words:
                raise UsageError("--each needs a command after '--' with {}", hint=QUEUE_HINT)
            words.pop(0)
            opts["command"], words = words, []
        else:
            raise UsageError(f"unknown option {word!r}", hint=QUEUE_HINT)
    if not opts["on"]:
        raise UsageError("orch queue needs --on BACKEND", hint=QUEUE_HINT)
    if bool(opts["file"]) == bool(opts["each"]):
        raise UsageError("give --file FILE or --each ARG... -- CMD {}", hint=QUEUE_HINT)
    if opts["each"] and not opts["command"]:
        raise UsageError("--each needs a command after '--' with {}", hint=QUEUE_HINT)
    return opts
