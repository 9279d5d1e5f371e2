"""`orch ssh-config show|write|remove`, `orch ports list|add|remove`, `orch machine forget-key`."""

from __future__ import annotations

import argparse

from remote_config.ports import (
    REVERSE_HELP,
    SPEC_HELP,
    PortSyntaxError,
    parse_forward,
    parse_port,
)
from sidecar.app import Orchestrator
from sidecar.cli import dispatch
from sidecar.cli.output import print_json, table
from sidecar.errors import UsageError
from sidecar.results import PortsResult, SshConfigResult

Sub = argparse._SubParsersAction


def _verb(group: Sub, name: str, help: str, handler: object) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=handler)
    return parser


def register(sub: Sub) -> None:
    cfg = sub.add_parser(
        "ssh-config",
        help="orch's managed ssh config and its Include line in ~/.ssh/config",
        description="orch writes only $ORCH_HOME/ssh/config and one `Include` line at the top "
        "of your ssh config ($ORCH_SSH_USER_CONFIG, default ~/.ssh/config); nothing else "
        "in your file changes. See docs/ssh.md.",
    )
    verbs = cfg.add_subparsers(dest="verb", metavar="VERB", required=True)
    _verb(verbs, "show", "show the managed config and whether your ssh config includes it", show)
    _verb(verbs, "write", "write the managed config and the Include line (atomic)", write)
    _verb(verbs, "remove", "remove the Include line and the managed config", remove)

    ports = sub.add_parser("ports", help="local port forwards to the machine")
    pverbs = ports.add_subparsers(dest="verb", metavar="VERB", required=True)
    lst = _verb(pverbs, "list", "list forwards and their state (active, reconnecting, dead)", ls)
    lst.add_argument("-m", "--machine", help="machine name (default: the project's default)")
    add = _verb(pverbs, "add", "forward a local port (no argument: orch.toml's ports)", ports_add)
    add.add_argument("spec", nargs="?", help=f"{SPEC_HELP}; with --reverse: {REVERSE_HELP}")
    add.add_argument(
        "-R",
        "--reverse",
        action="store_true",
        help="the machine's port reaches this computer's LOCAL port (OpenSSH's RemoteForward)",
    )
    add.add_argument("-m", "--machine", help="machine name (default: the project's default)")
    rm = _verb(pverbs, "remove", "stop forwarding a local port", ports_remove)
    rm.add_argument("local_port", metavar="PORT", help="the local port (--reverse: the machine's)")
    rm.add_argument("-R", "--reverse", action="store_true", help="remove a reverse forward")
    rm.add_argument("-m", "--machine", help="machine name (default: the project's default)")

    machine = sub.add_parser("machine", help="machine maintenance")
    mverbs = machine.add_subparsers(dest="verb", metavar="VERB", required=True)
    forget = mverbs.add_parser(
        "forget-key",
        help="unpin a machine's host key after you checked its new one",
        description="Removes the pinned host key of MACHINE (a machine name or its SSH "
        "alias). Check the new key out of band first; `orch up` then pins it again from "
        "the trusted channel (the local machine's key file, or host_key in orch.toml).",
    )
    forget.add_argument("machine")
    forget.set_defaults(handler=forget_key)


def _print_config(result: SshConfigResult, verb: str) -> None:
    if verb == "show" and result.text is not None:
        print(result.text, end="" if result.text.endswith("\n") else "\n")
    state = {
        "top": "included (first line)",
        "not-first": "included, but not on the first line",
        "absent": "not included",
        "no-file": "file does not exist",
    }[result.include]
    if verb == "write":
        print(f"{'wrote' if result.changed else 'unchanged:'} {result.path}")
    elif verb == "remove":
        print("removed orch's Include line and managed config" if result.changed else "nothing")
    print(f"{result.user_config}: {state}")
    if result.hosts:
        print(f"hosts: {', '.join(result.hosts)}")
    if result.backup:
        print(f"backup of your original file: {result.backup}")
    for skipped in result.skipped:
        print(f"note: {skipped}")
    for warning in result.warnings:
        print(f"warning: {warning}")


async def show(orch: Orchestrator, args: argparse.Namespace) -> int:
    result = await orch.ssh_config_show()
    print_json(result) if args.json else _print_config(result, "show")
    return 0


async def write(orch: Orchestrator, args: argparse.Namespace) -> int:
    result = await dispatch.call(orch, "ssh_config_write", SshConfigResult)
    print_json(result) if args.json else _print_config(result, "write")
    return 0


async def remove(orch: Orchestrator, args: argparse.Namespace) -> int:
    result = await orch.ssh_config_remove()
    print_json(result) if args.json else _print_config(result, "remove")
    return 0


def _print_ports(result: PortsResult) -> None:
    if not result.ports:
        print("no port forwards (add one: orch ports add 8888)")
        return
    rows = [
        [
            f"127.0.0.1:{p.local_port}",
            "<-" if p.reverse else "->",
            f"{p.remote_host}:{p.remote_port}",
            p.state,
            p.machine or "-",
            p.owner_pid or "-",
            p.detail or ("orch.toml" if p.from_config else ""),
        ]
        for p in result.ports
    ]
    print(table(["LOCAL", "", "REMOTE", "STATE", "MACHINE", "PID", "NOTE"], rows))


async def ls(orch: Orchestrator, args: argparse.Namespace) -> int:
    result = await orch.ports_list(args.machine)
    print_json(result) if args.json else _print_ports(result)
    return 0


def parse_spec(spec: str, reverse: bool = False) -> tuple[int, int | None, str]:
    """LOCAL | LOCAL:REMOTE_PORT | LOCAL:REMOTE_HOST:REMOTE_PORT (remote_config.ports)."""
    try:
        got = parse_forward(spec, reverse=reverse)
    except PortSyntaxError as exc:
        raise UsageError(
            str(exc), hint="e.g. orch ports add 8888:8000, or orch ports add --reverse 8001"
        ) from None
    return got.local_port, got.remote_port, got.remote_host


async def ports_add(orch: Orchestrator, args: argparse.Namespace) -> int:
    if args.spec is None:
        if args.reverse:
            raise UsageError(
                "--reverse needs a port", hint="e.g. orch ports add --reverse 8001[:8001]"
            )
        result = await orch.ports_add_defaults(args.machine)
        print_json(result) if args.json else _print_ports(result)
        return 0
    local, remote, host = parse_spec(args.spec, args.reverse)
    info = await orch.ports_add(local, remote, host, args.machine, reverse=args.reverse)
    if args.json:
        print_json(info)
    elif info.state == "direct":
        print(f"not forwarded on {info.machine}: {info.detail}")
    else:
        note = f" ({info.detail})" if info.detail else ""
        here, there = f"127.0.0.1:{info.local_port}", f"{info.remote_host}:{info.remote_port}"
        what = f"{there} on {info.machine} -> {here} here" if info.reverse else f"{here} -> {there}"
        where = "" if info.reverse else f" on {info.machine}"
        print(f"forwarding {what}{where}: {info.state}{note}")
    return 0


async def ports_remove(orch: Orchestrator, args: argparse.Namespace) -> int:
    try:
        port = parse_port(args.local_port)
    except PortSyntaxError as exc:
        raise UsageError(str(exc), hint="e.g. orch ports remove 8888") from None
    result = await orch.ports_remove(port, args.machine, reverse=args.reverse)
    what = f"the machine's port {port} (reverse)" if args.reverse else f"port {port}"
    print_json(result) if args.json else print(f"stopped forwarding {what}")
    return 0


async def forget_key(orch: Orchestrator, args: argparse.Namespace) -> int:
    alias = orch.forget_host_key(args.machine)
    print(f"unpinned the host key of {alias}; `orch up` pins it again from its trusted source")
    return 0
