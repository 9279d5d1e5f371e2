"""`orch up`, `orch down`, `orch status` and `orch ssh`."""

from __future__ import annotations

import argparse
import os
import sys

from sidecar.app import Orchestrator
from sidecar.cli.output import Spinner, human_duration, print_json, table
from sidecar.machines.base import MachineInfo


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="start the machine (default: the project's default machine)")
    up.add_argument("machine", nargs="?", help="machine name from orch.toml (default: local)")
    up.add_argument("--json", action="store_true", help="print the result as JSON")
    up.set_defaults(handler=cmd_up)

    down = sub.add_parser("down", help="stop the machine")
    down.add_argument("machine", nargs="?")
    down.add_argument("--json", action="store_true", help="print the result as JSON")
    down.add_argument(
        "--force", action="store_true", help="stop it even while jobs run there (may end them)"
    )
    down.set_defaults(handler=cmd_down)

    status = sub.add_parser("status", help="show the machine and its jobs")
    status.add_argument("machine", nargs="?")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=cmd_status)

    ssh = sub.add_parser(
        "ssh",
        help="open a shell, or run a command, on the machine with OpenSSH",
        description="Runs the real OpenSSH client through orch's managed config. "
        "Everything after `--` is the remote command (as with ssh, joined by spaces).",
    )
    ssh.add_argument("-m", "--machine", help="machine name (default: the project's default)")
    ssh.add_argument("-t", "--tty", action="store_true", help="force a terminal for the command")
    ssh.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ...")
    ssh.set_defaults(handler=cmd_ssh)


def _machine_line(info: MachineInfo) -> str:
    parts = [f"{info.name} ({info.kind}): {info.state}"]
    if info.address:
        parts.append(f"at {info.address}")
    if info.uptime_s is not None:
        parts.append(f"up {human_duration(info.uptime_s)}")
    line = ", ".join(parts)
    return f"{line} — {info.detail}" if info.detail else line


async def cmd_up(orch: Orchestrator, args: argparse.Namespace) -> int:
    spinner = Spinner(f"starting {orch.machine_name(args.machine)}")
    async with spinner.running():
        info = await orch.up(args.machine, progress=spinner.update)
    if args.json:
        print_json(info)
    elif info.detail == "already running":
        print(f"{info.name} is already running at {info.address} (nothing to do)")
    else:
        print(_machine_line(info))
    return 0


async def cmd_down(orch: Orchestrator, args: argparse.Namespace) -> int:
    from sidecar.errors import JobsRunning

    force = bool(args.force)
    if not force:
        try:
            await orch._refuse_down_with_jobs(args.machine)
        except JobsRunning as exc:
            if args.json or not (sys.stdin.isatty() and sys.stderr.isatty()):
                raise
            sys.stderr.write(f"orch: {exc.message}\nstop the machine anyway? [y/N] ")
            sys.stderr.flush()
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                print("not stopped", file=sys.stderr)
                return JobsRunning.exit_code
            force = True
    spinner = Spinner(f"stopping {orch.machine_name(args.machine)}")
    async with spinner.running():
        info = await orch.down(args.machine, force=force)
    print_json(info) if args.json else print(_machine_line(info))
    return 0


async def cmd_status(orch: Orchestrator, args: argparse.Namespace) -> int:
    status = await orch.status(args.machine)
    if args.json:
        print_json(status)
        return 0
    m = status.machine
    print(
        table(
            ["MACHINE", "KIND", "STATE", "ADDRESS", "UPTIME"],
            [
                [
                    m.name,
                    m.kind,
                    m.state,
                    m.address or "-",
                    human_duration(m.uptime_s) if m.uptime_s is not None else "-",
                ]
            ],
        )
    )
    if m.detail:
        print(f"note: {m.detail}")
    if status.jobs:
        from sidecar.cli.jobs_cmds import jobs_table

        print()
        print(jobs_table(status.jobs))
    elif m.state == "running":
        print("no jobs (start one with: orch run NAME -- CMD ...)")

    return 0


async def cmd_ssh(orch: Orchestrator, args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    argv = await orch.ssh_argv(args.machine, command or None, tty=args.tty)
    await orch.close()
    sys.stdout.flush()
    os.execvp(argv[0], argv)  # noqa: S606 (argv list built by ssh_argv, no shell)
    return 0  # not reached
