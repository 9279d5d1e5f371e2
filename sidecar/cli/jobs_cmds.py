"""`orch run`, `orch logs`, `orch attach`, `orch stop`, `orch restart`, `orch rm`.

`orch status` (machine_cmds) prints the jobs table with `jobs_table` from here.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime

from remote_config.jobs import JobInfo
from sidecar.app import Orchestrator
from sidecar.cli import dispatch
from sidecar.cli.fast_jobs import (
    job_state_text,
    removed_text,
    restarted_text,
    started_text,
    stopped_text,
)
from sidecar.cli.job_options import (
    JobOptions,
    as_argv,
    command_words,
    parse_duration,
    take_options,
)
from sidecar.cli.output import human_bytes, human_duration, print_json, print_session, table
from sidecar.errors import UsageError

RUN_HELP = """\
Run a job in a tmux session on the machine, in the project's remote folder; its output goes
to ~/logs/NAME/run.log there. Two forms:
  orch run NAME -- CMD ARG...   an argv: run word for word (no shell interprets it)
  orch run NAME "CMD LINE"      one shell command line, run by exactly one shell (bash, else sh)
Options (--env KEY=VALUE, --replace, --[no-]snapshot, --live, --json, -m MACHINE, --on BACKEND,
--outputs DIR) go before the command. By default a job runs from a snapshot of the synced tree
when the project was synced there (`orch sync`), so later syncs never change the code under
it: use that for training and batch runs. `--live` (or `[jobs] live = ["NAME"]` in orch.toml)
runs it in the project folder itself, so each save reaches it: use that for a dev server that
reloads. With --on BACKEND (a [backends.NAME] of orch.toml, e.g. kind = "fargate") the job runs
there instead, from the same snapshot shipped to S3; --outputs DIR is uploaded at its end and
`orch fetch NAME` downloads it (docs/fargate.md)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser(
        "run",
        help="run a job on the machine (keeps running when you disconnect)",
        description=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="orch run [options] NAME [options] (-- CMD [ARG...] | 'CMD LINE')",
    )
    _machine(run)
    run.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--replace", action="store_true", help="stop a running job of that name")
    run.add_argument("--json", action="store_true", help="print the job as JSON")
    run.add_argument(
        "--snapshot",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run from a hard-linked snapshot of the synced tree, so later syncs never change "
        "its code (default: [jobs] snapshot, on when the project was synced there)",
    )
    run.add_argument(
        "--live",
        dest="snapshot",
        action="store_false",
        help="run in the live project folder, so every save reaches the job (a dev server "
        "that reloads); the same as --no-snapshot",
    )
    run.add_argument(
        "--expect",
        metavar="DURATION",
        help="how long the job should run (90m, 2h): orch warns when the machine may "
        "suspend before (a codespace's idle timeout)",
    )
    run.add_argument(
        "--debug",
        action="store_true",
        help="run the (Python) command under debugpy: see orch debug --help",
    )
    run.add_argument("--on", metavar="BACKEND", help="run on a configured backend (fargate)")
    run.add_argument(
        "--outputs", metavar="DIR", help="with --on: upload this folder when the job ends"
    )
    run.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    run.set_defaults(handler=cmd_run)

    logs = sub.add_parser("logs", help="print a job's output (-f: follow until it ends)")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    logs.add_argument("-n", "--tail", type=int, default=None, metavar="N", help="last N lines")
    _machine(logs)
    _on(logs)
    logs.set_defaults(handler=cmd_logs)

    attach = sub.add_parser("attach", help="open the job's tmux session (detach: Ctrl-b d)")
    attach.add_argument("name")
    _machine(attach)
    attach.set_defaults(handler=cmd_attach)

    for verb, helptext, handler in (
        ("stop", "stop a job: SIGINT, then SIGTERM, then SIGKILL after the grace period", cmd_stop),
        ("restart", "stop a job if it runs, then run its command again", cmd_restart),
    ):
        p = sub.add_parser(verb, help=helptext)
        p.add_argument("name")
        p.add_argument("--json", action="store_true", help="print the job as JSON")
        _machine(p)
        _on(p)
        p.set_defaults(handler=handler)

    rm = sub.add_parser("rm", help="forget a finished job (its logs are kept unless --purge)")
    rm.add_argument("name")
    rm.add_argument("--purge", action="store_true", help="delete its logs too")
    _machine(rm)
    _on(rm)
    rm.set_defaults(handler=cmd_rm)

    fetch = sub.add_parser("fetch", help="download the outputs a backend job uploaded")
    fetch.add_argument("name")
    fetch.add_argument("--to", metavar="DIR", help="where (default: outputs/NAME in the project)")
    _on(fetch)
    fetch.set_defaults(handler=cmd_fetch)


def _on(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--on", metavar="BACKEND", help="the job's backend (default: found by the job's name)"
    )


def _machine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--machine", help="machine name (default: the project's default)")


# -- orch run ------------------------------------------------------------------------------
_RUN_HINT = "orch run NAME -- CMD ARG...  or  orch run NAME 'CMD LINE'"


@dataclass
class RunArgs(JobOptions):
    name: str = ""
    command: str | list[str] = ""


def parse_run_args(args: argparse.Namespace) -> RunArgs:
    """Split `orch run`'s words: NAME, options, then `-- ARGV...` or one command line."""
    opts = RunArgs(
        env=list(args.env),
        replace=args.replace,
        json=args.json,
        machine=args.machine,
        snapshot=getattr(args, "snapshot", None),
        debug=getattr(args, "debug", False),
        on=getattr(args, "on", None),
        outputs=getattr(args, "outputs", None),
        expect_s=parse_duration(getattr(args, "expect", None)),
    )
    words = list(args.args)
    if words and words[0] == "--":
        words.pop(0)
    if not words:
        raise UsageError("orch run needs a job name and a command", hint=_RUN_HINT)
    opts.name, words = words[0], words[1:]
    words = take_options(words, opts, hint=_RUN_HINT, allow_debug=True)
    opts.command = command_words(words, opts.name, _RUN_HINT)
    return opts


async def cmd_run(orch: Orchestrator, args: argparse.Namespace) -> int:
    run = parse_run_args(args)
    name, command, env = run.name, run.command, run.environment()
    if run.debug:
        from sidecar.cli.debug_cmds import debug_job

        argv = as_argv(command)
        session = await debug_job(orch, name, argv, run.machine, env, run.replace, run.snapshot)
        print_json(session) if run.json else print_session(session)
        return 0
    if run.debug and run.on:
        raise UsageError("--debug needs a job on a machine; backends have no debugger port")
    if run.expect_s is not None:
        warning = orch.provider(run.machine).long_job_warning(run.expect_s)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    job = await dispatch.call(
        orch,
        "jobs_run",
        JobInfo,
        run.machine,
        name=name,
        command=command,
        env=env,
        replace=run.replace,
        snapshot=run.snapshot,
        on=run.on,
        outputs=run.outputs,
    )
    print_json(job) if run.json else print(started_text(job))
    return 0


# -- the others ----------------------------------------------------------------------------
async def cmd_logs(orch: Orchestrator, args: argparse.Namespace) -> int:
    if args.tail is not None and args.tail < 0:
        raise UsageError("--tail must be 0 or more")
    stream = dispatch.logs(orch, args.name, args.tail, args.follow, args.machine, args.on)
    async for chunk in stream:
        sys.stdout.write(chunk)
        sys.stdout.flush()
    return 0


async def cmd_attach(orch: Orchestrator, args: argparse.Namespace) -> int:
    """tmux in a terminal needs the user's own OpenSSH with a tty: the agent works out the
    argv (the job's state, the managed ssh config), this process runs it in the foreground."""
    from sidecar.cli.machine_cmds import run_openssh

    argv = await dispatch.call(orch, "attach_argv", list[str], args.machine, name=args.name)
    return await run_openssh(orch, argv, args.machine)


async def _job(orch: Orchestrator, method: str, args: argparse.Namespace) -> JobInfo:
    job: JobInfo = await dispatch.call(
        orch, method, JobInfo, args.machine, name=args.name, on=args.on
    )
    return job


async def cmd_stop(orch: Orchestrator, args: argparse.Namespace) -> int:
    before = await _job(orch, "jobs_info", args)
    job = await _job(orch, "jobs_stop", args)
    print_json(job) if args.json else print(stopped_text(before, job))
    return 0


async def cmd_restart(orch: Orchestrator, args: argparse.Namespace) -> int:
    job = await _job(orch, "jobs_restart", args)
    print_json(job) if args.json else print(restarted_text(job))
    return 0


async def cmd_rm(orch: Orchestrator, args: argparse.Namespace) -> int:
    backend = orch.job_backend_of(args.name, args.on)
    await dispatch.call(
        orch, "jobs_rm", None, args.machine, name=args.name, purge=args.purge, on=args.on
    )
    print(removed_text(args.name, backend, args.purge))
    return 0


async def cmd_fetch(orch: Orchestrator, args: argparse.Namespace) -> int:
    folder = await orch.jobs_fetch(args.name, args.to, on=args.on)
    print(f"fetched the outputs of {args.name} into {folder}")
    return 0


# -- the jobs table of `orch status` -------------------------------------------------------
def _started(job: JobInfo) -> str:
    if job.started is None:
        return "-"
    local = job.started.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def jobs_table(jobs: list[JobInfo]) -> str:
    rows = [
        [
            job.name,
            job_state_text(job),
            _started(job),
            human_bytes(job.rss_bytes),
            "-" if job.cpu_percent is None else f"{job.cpu_percent:.0f}%",
            human_duration(job.duration_s),
            "-" if job.exit_code is None else job.exit_code,
            ", ".join(x for x in (job.mode, "stale" if job.code_stale else "") if x),
        ]
        for job in jobs
    ]
    headers = ["NAME", "STATE", "STARTED", "MEMORY", "CPU", "DURATION", "EXIT", "CODE"]
    if any(job.backend != "tmux" for job in jobs):  # jobs on a backend: where, and the cost
        headers += ["ON", "COST"]
        for row, job in zip(rows, jobs, strict=True):
            cost = "-" if job.cost_usd is None else f"${job.cost_usd:.4f}"
            row += [job.backend, cost]
    lines = [table(headers, rows)]
    for job in jobs:
        if job.state == "interrupted" and job.backend == "tmux":  # an EC2 spot notice
            detail = (job.detail or "spot interruption").replace("NAME", job.name)
            lines.append(f"note: {job.name} is interrupted: {detail}")
        elif job.state == "interrupted":
            lines.append(
                f"note: {job.name} was interrupted (Fargate Spot took the capacity back); "
                f"run it again: orch restart {job.name}"
            )
        elif job.state == "lost":
            lines.append(f"note: {job.name} is lost: {job.detail}")
        elif job.state == "running" and job.detail and job.detail != "starting":
            lines.append(f"note: {job.name}: {job.detail}")
        if job.code_stale:
            lines.append(
                f"note: {job.name} runs older code than the project folder now holds "
                f"(restart it to pick up changes: orch restart {job.name})"
            )
    return "\n".join(lines)
