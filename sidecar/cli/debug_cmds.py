"""`orch debug`: run a job under debugpy, attach to one, write launch.json entries."""

from __future__ import annotations

import argparse
import sys

from sidecar.app import Orchestrator
from sidecar.cli import dispatch
from sidecar.cli.job_options import JobOptions, as_argv, command_words, take_options
from sidecar.cli.output import print_json, print_session
from sidecar.errors import UsageError
from sidecar.results import DebugConfigResult, DebugSession

DEBUG_HELP = """\
  orch debug NAME [options] -- python script.py ARGS   start job NAME under debugpy
  orch debug attach NAME                               forward/print how to attach to it
  orch debug config [NAME]                             write .vscode/launch.json's entry

The job waits for a debugger before it runs. orch forwards a free local port to debugpy (which
listens on the machine's loopback only) and maps your local project folder to the folder the
job runs in, so breakpoints set in your editor hit. Without NAME, `config` writes an entry for
a service that runs debugpy itself on [debug] remote_port (forward it: orch ports add PORT).
Options: --replace, --[no-]snapshot, -e KEY=VALUE, -m MACHINE, --json."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    debug = sub.add_parser(
        "debug",
        help="run a job under debugpy and attach VS Code to it",
        description=DEBUG_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="orch debug (NAME [options] -- CMD... | attach NAME | config [NAME])",
    )
    debug.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    debug.set_defaults(handler=cmd_debug)


_DEBUG_HINT = "orch debug NAME -- python script.py ARGS"


def _options(words: list[str]) -> tuple[JobOptions, list[str]]:
    opts = JobOptions()
    return opts, take_options(words, opts, hint=_DEBUG_HINT)


async def cmd_debug(orch: Orchestrator, args: argparse.Namespace) -> int:
    words = list(args.words)
    if not words:
        raise UsageError("orch debug needs a job name", hint="see: orch debug --help")
    verb = words[0]
    if verb == "attach":
        opts, rest = _options(words[1:])
        if len(rest) != 1:
            raise UsageError("usage: orch debug attach NAME")
        session = await dispatch.call(
            orch, "debug_attach", DebugSession, opts.machine, name=rest[0]
        )
        print_json(session) if opts.json else print_session(session)
        return 0
    if verb == "config":
        opts, rest = _options(words[1:])
        if len(rest) > 1:
            raise UsageError("usage: orch debug config [NAME]")
        name = rest[0] if rest else None
        result = await dispatch.call(
            orch, "debug_config", DebugConfigResult, opts.machine, name=name
        )
        if opts.json:
            print_json(result)
        else:
            print(f"wrote “{result.configuration['name']}” to {result.path}")
        return 0
    return await start_debug_job(orch, verb, words[1:])


async def start_debug_job(orch: Orchestrator, name: str, words: list[str]) -> int:
    opts, rest = _options(words)
    argv = as_argv(command_words(rest, name, _DEBUG_HINT))
    env = opts.environment()

    session = await debug_job(orch, name, argv, opts.machine, env, opts.replace, opts.snapshot)
    print_json(session) if opts.json else print_session(session)
    return 0


async def debug_job(
    orch: Orchestrator,
    name: str,
    argv: list[str],
    machine: str | None,
    env: dict[str, str],
    replace: bool | None,
    snapshot: bool | None,
) -> DebugSession:
    """Start job `name` under debugpy (`orch debug NAME`, `orch run --debug`); each step is
    said on stderr as it happens."""

    def say(message: str) -> None:
        print(f"orch: {message}", file=sys.stderr)

    session: DebugSession = await dispatch.call(
        orch,
        "debug_start",
        DebugSession,
        machine,
        say,
        name=name,
        command=argv,
        env=env,
        replace=bool(replace),
        snapshot=snapshot,
    )
    return session
