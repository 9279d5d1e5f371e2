"""`orch up`, `orch down` (also `--terminate`, `--all`), `orch status`, `orch machines` and
`orch ssh`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys

from sidecar.app import Orchestrator
from sidecar.cli import dispatch
from sidecar.cli.output import Spinner, human_duration, print_json, table
from sidecar.errors import OrchError, UsageError
from sidecar.results import (
    CreatePlan,
    FleetEntry,
    MachineEntry,
    MachineInfo,
    MachinesOverview,
    OrchStatus,
    TerminatePlan,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="start the machine (default: the project's default machine)")
    up.add_argument("machine", nargs="?", help="machine name from orch.toml (default: local)")
    up.add_argument("--json", action="store_true", help="print the result as JSON")
    up.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="create a costly (GPU, expensive) machine without asking",
    )
    up.set_defaults(handler=cmd_up)

    down = sub.add_parser("down", help="stop the machine")
    down.add_argument("machine", nargs="?")
    down.add_argument("--json", action="store_true", help="print the result as JSON")
    down.add_argument(
        "--force", action="store_true", help="stop it even while jobs run there (may end them)"
    )
    down.add_argument(
        "--terminate",
        "--delete",
        dest="terminate",
        action="store_true",
        help="destroy the machine and its disks (cloud machines; asks first, naming them and "
        "any unpushed work)",
    )
    down.add_argument(
        "--all",
        action="store_true",
        help="stop every running orch EC2 machine these AWS credentials see (asks first)",
    )
    down.add_argument("--all-regions", action="store_true", help="with --all: every region")
    down.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    down.set_defaults(handler=cmd_down)

    destroy = sub.add_parser(
        "destroy", help="terminate a cloud machine and its disks (orch down --terminate)"
    )
    destroy.add_argument("machine", nargs="?")
    destroy.add_argument("--json", action="store_true", help="print the result as JSON")
    destroy.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    destroy.set_defaults(
        handler=cmd_down, terminate=True, all=False, all_regions=False, force=False
    )

    machines = sub.add_parser(
        "machines",
        help="list this project's machines of every kind and every orch EC2 machine the AWS "
        "credentials see (finds forgotten ones), with what they cost and the spend today",
    )
    machines.add_argument(
        "--all-regions", action="store_true", help="look in every region, not only orch.toml's"
    )
    machines.add_argument("--json", action="store_true", help="print the list as JSON")
    machines.set_defaults(handler=cmd_machines)

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
    plan = await dispatch.call(orch, "up_plan", CreatePlan | None, args.machine)
    if plan is not None:
        print(f"orch: will {plan.description}", file=sys.stderr)
        if plan.ask:
            confirm(f"{plan.reason}: create it?", args.yes)
    spinner = Spinner(f"starting {orch.machine_name(args.machine)}")
    async with spinner.running():
        info = await dispatch.call(orch, "up", MachineInfo, args.machine, spinner.update)
    if args.json:
        print_json(info)
    elif info.detail == "already running":
        print(f"{info.name} is already running at {info.address} (nothing to do)")
    else:
        print(_machine_line(info))
    return 0


def confirm(question: str, yes: bool) -> None:
    """Ask; anything but 'y'/'yes' cancels (exit 1). With nothing to read an answer from (no
    terminal, no piped answer), refuse and point at --yes: a script never destroys by accident."""
    if yes:
        return
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        print(file=sys.stderr)
        raise UsageError(
            "this needs a confirmation and there was no answer to read",
            hint="pass --yes to go ahead without asking",
        )
    if line.strip().lower() not in ("y", "yes"):
        raise OrchError("cancelled: nothing was changed", hint="pass --yes to skip the question")


async def cmd_down(orch: Orchestrator, args: argparse.Namespace) -> int:
    from sidecar.errors import JobsRunning

    if args.all:
        return await _down_all(orch, args)
    name = orch.machine_name(args.machine)
    force = bool(args.force or args.yes)
    if not force:
        try:
            await dispatch.call(orch, "down_check", None, args.machine)
        except JobsRunning as exc:
            if args.json or not (sys.stdin.isatty() and sys.stderr.isatty()):
                raise
            print(f"orch: {exc.message}", file=sys.stderr)
            confirm("stop the machine anyway?", False)
            force = True
    if args.terminate:
        preview = await dispatch.call(orch, "terminate_preview", TerminatePlan, name)
        if preview.plan is None:
            print(f"{name}: nothing to terminate")
            return 0
        for warning in preview.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        question = f"terminate {name}: {preview.plan}? Its disk and every file on it are deleted."
        confirm(question, args.yes)
    spinner = Spinner(f"{'terminating' if args.terminate else 'stopping'} {name}")
    method = "terminate" if args.terminate else "down"
    async with spinner.running():
        info = await dispatch.call(orch, method, MachineInfo, args.machine, force=force)
    print_json(info) if args.json else print(_machine_line(info))
    return 0


async def _down_all(orch: Orchestrator, args: argparse.Namespace) -> int:
    entries = await orch.machines_list(all_regions=args.all_regions)
    running = [e for e in entries if e.state in ("pending", "running")]
    if not running:
        print("no running orch machines")
        return 0
    print(_fleet_table(running))
    confirm(f"stop these {len(running)} machine(s)? Their disks are kept.", args.yes)
    stopped = await orch.machines_stop(running)
    for entry in stopped:
        print(f"stopping {entry.instance_id} ({entry.project}/{entry.machine}, {entry.region})")
    return 0


def _money(value: float | None, fmt: str = "${:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _fleet_table(entries: list[FleetEntry]) -> str:
    return table(
        [
            "REGION",
            "INSTANCE",
            "PROJECT",
            "MACHINE",
            "STATE",
            "TYPE",
            "MARKET",
            "UPTIME",
            "$/H",
            "COST",
        ],
        [
            [
                e.region,
                e.instance_id,
                e.project or "-",
                e.machine or "-",
                e.state,
                e.instance_type,
                e.market,
                human_duration(e.uptime_s),
                _money(e.price_per_hour, "${:.4f}"),
                _money(e.cost_so_far),
            ]
            for e in entries
        ],
    )


def _machines_table(entries: list[MachineEntry]) -> str:
    def where(e: MachineEntry) -> str:
        return " ".join(x for x in (e.region, e.instance_id) if x) or e.address or "-"

    return table(
        ["PROJECT", "MACHINE", "KIND", "STATE", "WHERE", "TYPE", "UPTIME", "$/H", "COST"],
        [
            [
                e.project or "-",
                e.machine or "-",
                e.kind,
                e.state,
                where(e),
                " ".join(x for x in (e.type, e.market) if x) or "-",
                human_duration(e.uptime_s) if e.uptime_s is not None else "-",
                _money(e.price_per_hour, "${:.4f}"),
                _money(e.cost_so_far),
            ]
            for e in entries
        ],
    )


async def cmd_machines(orch: Orchestrator, args: argparse.Namespace) -> int:
    overview = await dispatch.call(
        orch, "machines_inventory", MachinesOverview, all_regions=args.all_regions
    )
    if args.json:
        print_json(overview)
        return 0
    print(_machines_table(overview.machines))
    for note in overview.notes:
        print(f"note: {note}", file=sys.stderr)
    if overview.cost is not None:
        print(f"spend: {overview.cost.line}")
        if overview.cost.over_budget:
            print(f"warning: the daily budget is spent ({overview.cost.line})", file=sys.stderr)
    return 0


async def cmd_status(orch: Orchestrator, args: argparse.Namespace) -> int:
    # The editor shows a broken orch.toml or an unknown machine inside the status; on the
    # command line they are errors with their message and exit code (3, 4).
    orch.provider(args.machine)
    status = await orch.status(args.machine)
    if args.json:
        print_json(status)
        return 0
    print_status(status)
    return 0


def print_status(status: OrchStatus) -> None:
    """`orch status`'s text (also rendered by the orch agent for its thin clients)."""
    m = status.machine
    headers = ["MACHINE", "KIND", "STATE", "ADDRESS", "UPTIME"]
    row = [
        m.name,
        m.kind,
        m.state,
        m.address or "-",
        human_duration(m.uptime_s) if m.uptime_s is not None else "-",
    ]
    if m.instance_type:  # a cloud machine: what it is and what it costs
        headers += ["TYPE", "MARKET", "$/H", "COST"]
        row += [
            m.instance_type,
            m.market or "-",
            _money(m.price_per_hour, "${:.4f}"),
            _money(m.cost_so_far),
        ]
    print(table(headers, [row]))
    if m.price_note:
        print(f"price: {m.price_note}")
    if m.detail:
        print(f"note: {m.detail}")
    cost = None if m.instance_type else _cost_line(m)  # EC2 shows it in the table
    if cost:
        print(cost)
    if status.idle:
        print(f"idle: {status.idle.line}")
    if status.cost is not None and (status.cost.spend_today or status.cost.daily_budget):
        print(f"spend: {status.cost.line}")
        if status.cost.over_budget:
            print(f"warning: the daily budget is spent ({status.cost.line})", file=sys.stderr)
    if status.jobs:
        from sidecar.cli.jobs_cmds import jobs_table

        print()
        print(jobs_table(status.jobs))
    elif m.state == "running":
        print("no jobs (start one with: orch run NAME -- CMD ...)")
    if status.queues:
        from sidecar.cli.backend_cmds import queues_table

        print()
        print(queues_table(status.queues))


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cost_line(m: MachineInfo) -> str | None:
    """Type, idle timeout and cost of a cloud machine, when its kind reports them."""
    parts = []
    if m.machine_type:
        parts.append(f"type {m.machine_type}")
    if m.idle_timeout_minutes is not None:
        parts.append(f"idle timeout {m.idle_timeout_minutes} min")
    if m.price_per_hour is not None:
        parts.append(f"${m.price_per_hour:.2f}/h")
    if m.cost_so_far is not None:
        parts.append(f"${m.cost_so_far:.2f} since it started")
    return ", ".join(parts) if parts else None


async def cmd_ssh(orch: Orchestrator, args: argparse.Namespace) -> int:
    """OpenSSH as a child (not exec'd), so that its own failures get orch's exit codes: ssh
    exits 255 both when it cannot connect and when the remote command exits 255, and only a
    probe through the pool (which verifies the same pinned key) can tell them apart."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    argv = await dispatch.call(
        orch, "ssh_argv", list[str], args.machine, command=command or None, tty=args.tty
    )
    return await run_openssh(orch, argv, args.machine)


async def run_openssh(orch: Orchestrator, argv: list[str], machine: str | None) -> int:
    """Run OpenSSH in the foreground; its exit status, or exit 5 when ssh itself failed."""
    sys.stdout.flush()
    # Ctrl-C belongs to ssh (and the remote command); orch waits for it to finish.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = subprocess.Popen(argv, preexec_fn=_default_sigint)
        code = await asyncio.to_thread(child.wait)
    finally:
        signal.signal(signal.SIGINT, previous)
    if code == 255:
        # Raises HostKeyMismatch, AuthenticationFailed, Unreachable… (exit 5) when ssh could
        # not connect; when it can, 255 was the remote command's own status.
        await dispatch.call(orch, "probe", None, machine)
    return code
