"""`orch debug`: run a job under debugpy, attach to one, write launch.json entries."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field

from sidecar.app import Orchestrator
from sidecar.cli.jobs_cmds import parse_env_assignments
from sidecar.cli.output import print_json
from sidecar.debug.service import DebugSession
from sidecar.errors import UsageError

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


@dataclass
class DebugOptions:
    env: list[str] = field(default_factory=list)
    replace: bool = False
    snapshot: bool | None = None
    json: bool = False
    machine: str | None = None


def _options(words: list[str]) -> tuple[DebugOptions, list[str]]:
    opts = DebugOptions()
    while words and words[0].startswith("-") and words[0] != "--":
        word, words = words[0], words[1:]
        key, eq, value = word.partition("=")
        if word == "--replace":
            opts.replace = True
        elif word == "--json":
            opts.json = True
        elif word in ("--snapshot", "--no-snapshot"):
            opts.snapshot = word == "--snapshot"
        elif key in ("-e", "--env", "-m", "--machine"):
            if not eq:
                if not words:
                    raise UsageError(f"{word} needs a value")
                value, words = words[0], words[1:]
            if key in ("-e", "--env"):
                opts.env.append(value)
            else:
                opts.machine = value
        else:
            raise UsageError(f"unknown option {word!r}", hint="see: orch debug --help")
    return opts, words


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


async def cmd_debug(orch: Orchestrator, args: argparse.Namespace) -> int:
    words = list(args.words)
    if not words:
        raise UsageError("orch debug needs a job name", hint="see: orch debug --help")
    verb = words[0]
    if verb == "attach":
        opts, rest = _options(words[1:])
        if len(rest) != 1:
            raise UsageError("usage: orch debug attach NAME")
        session = await orch.debug_attach(rest[0], machine=opts.machine)
        print_json(session) if opts.json else print_session(session)
        return 0
    if verb == "config":
        opts, rest = _options(words[1:])
        if len(rest) > 1:
            raise UsageError("usage: orch debug config [NAME]")
        result = await orch.debug_config(rest[0] if rest else None, machine=opts.machine)
        if opts.json:
            print_json(result)
        else:
            print(f"wrote “{result.configuration['name']}” to {result.path}")
        return 0
    return await start_debug_job(orch, verb, words[1:])


async def start_debug_job(orch: Orchestrator, name: str, words: list[str]) -> int:
    opts, rest = _options(words)
    if rest and rest[0] == "--":
        rest = rest[1:]
    if len(rest) == 1:
        rest = shlex.split(rest[0])
    if not rest:
        raise UsageError(
            f"no command given for job {name!r}", hint=f"orch debug {name} -- python script.py ARGS"
        )
    try:
        env = parse_env_assignments(opts.env)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    def say(message: str) -> None:
        print(f"orch: {message}", file=sys.stderr)

    session = await orch.debug_start(
        name,
        rest,
        machine=opts.machine,
        env=env,
        replace=bool(opts.replace),
        snapshot=opts.snapshot,
        say=say,
    )
    print_json(session) if opts.json else print_session(session)
    return 0
