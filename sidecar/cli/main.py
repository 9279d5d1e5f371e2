"""Entry point of the `orch` command: parse arguments, call the Orchestrator, map errors.

Exit codes: 0 ok, 1 failed, 2 usage, 3 orch.toml invalid, 4 not found (job, machine),
5 machine not running or unreachable, 6 conflict (already running, port busy),
130 interrupted. No traceback is printed unless ORCH_DEBUG=1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from sidecar import __version__

STATUS_TIMEOUT_S = float(os.environ.get("ORCH_AGENT_TIMEOUT_S", "5"))
NO_STATE = ("config", "init")  # commands that never start (or revive) the orch agent
AREAS = (
    "machine_cmds",
    "config_cmds",
    "ssh_cmds",
    "sync_cmds",
    "jobs_cmds",
    "debug_cmds",
    "profile_cmds",
    "init_cmds",
    "idle_cmds",
    "backend_cmds",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="orch",
        description="Cloud-first development: run heavy work on a remote machine from your editor.",
        epilog="Exit codes: 0 ok, 1 failed, 2 usage, 3 orch.toml invalid, 4 not found, "
        "5 machine not running or unreachable, 6 conflict, 130 interrupted. "
        "Set ORCH_DEBUG=1 for tracebacks. Docs: docs/cli.md",
    )
    parser.add_argument("--version", action="version", version=f"orch {__version__}")
    parser.add_argument(
        "-C", "--project-dir", type=Path, default=None, help="run as if started in this folder"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in AREAS:
        importlib.import_module(f"sidecar.cli.{area}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # orch uses no pydantic plugins; skipping their discovery (an entry-point scan of every
    # installed package) saves a noticeable slice of every command's start-up.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if argv in (["--version"], ["-V"]):  # fast path: no imports beyond the version string
        print(f"orch {__version__}")
        return 0
    fast = agent_status(argv)
    if fast is None:
        fast = agent_logs(argv)
    if fast is None:  # orch run/stop/restart/rm's plain forms, with no pydantic either
        from sidecar.cli.fast_jobs import agent_jobs

        fast = agent_jobs(argv)
    if fast is not None:
        return fast
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[..., object] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        print("orch: error: a command is needed (see the list above)", file=sys.stderr)
        return 2
    return run_handler(handler, args)


def agent_status(argv: list[str]) -> int | None:
    """`orch status [MACHINE] [--json]` answered by the running orch agent from its watched
    state, with no pydantic or asyncssh import; None: answer it the ordinary way (no agent
    runs, or it did not answer in time, said on stderr; or it runs with other settings,
    AWS_*, ORCH_*…, than this process: `agent_client.env_key`)."""
    rest, cwd = list(argv), None
    if rest[:1] in (["-C"], ["--project-dir"]) and len(rest) >= 2:
        cwd, rest = rest[1], rest[2:]
    if rest[:1] != ["status"] or os.environ.get("ORCH_NO_AGENT") == "1":
        return None
    others = [a for a in rest[1:] if a != "--json"]
    if len(others) > 1 or any(a.startswith("-") for a in others):
        return None  # --help and friends: the ordinary parser
    from sidecar import agent_client as client

    try:
        home = client.home_from_env()
        paths = client.agent_paths(home)
        if not client.alive(paths):
            if not client.wanted(paths):
                return None
            client.ensure()  # it died with syncs or forwards to bring back
        machine = others[0] if others else None
        request = {"op": "status", "cwd": os.path.abspath(cwd or os.getcwd()), "machine": machine}
        request["env"] = client.env_key()  # an agent with other settings does not answer
        try:
            reply = client.call(paths, request, timeout=STATUS_TIMEOUT_S)
        except client.AgentDown:  # not run (it was stopping, or just went): the next agent
            client.ensure()
            reply = client.call(paths, request, timeout=STATUS_TIMEOUT_S)
        if reply.get("env_differs"):
            return None  # (AWS_PROFILE=other orch status): read in this process, as run
        if client.version_key(str(reply.get("version"))) < client.version_key(__version__):
            client.ensure()  # an older agent: replaced by this version, then asked again
            reply = client.call(paths, request, timeout=STATUS_TIMEOUT_S)
            if reply.get("env_differs"):
                return None
    except client.AgentUnavailable as exc:
        print(f"orch: note: {exc}; reading the status without it", file=sys.stderr)
        return None
    except Exception:  # a bad $ORCH_HOME…: the ordinary path says it properly
        return None
    if not reply.get("ok"):
        print(f"orch: error: {reply.get('message')}", file=sys.stderr)
        if reply.get("hint"):
            print(f"hint: {reply['hint']}", file=sys.stderr)
        return int(reply.get("exit_code") or 1)
    if "--json" in rest:
        print(json.dumps(reply["status"], indent=2, sort_keys=False))
    else:
        sys.stdout.write(reply["text"])
        sys.stderr.write(reply.get("stderr") or "")  # (a warning: over the daily budget)
    return 0


def _logs_words(words: list[str]) -> tuple[str, bool, int | None, str | None, str | None] | None:
    """`orch logs`'s words as (NAME, follow, tail, machine, on) when they are the plain
    forms (`-f`, `-n N`, `-m M`, `--on B`…); None for anything else (`--help`, `--tail=5`,
    a bad count…): the ordinary parser then says what it says."""
    name, follow, tail, machine, on = None, False, None, None, None
    values = {"-n": "tail", "--tail": "tail", "-m": "machine", "--machine": "machine"}
    values["--on"] = "on"
    given: dict[str, str] = {}
    words = list(words)
    while words:
        word = words.pop(0)
        if word in ("-f", "--follow"):
            follow = True
        elif word in values and words and not words[0].startswith("-"):
            given[values[word]] = words.pop(0)
        elif word.startswith("-") or name is not None:
            return None
        else:
            name = word
    if name is None:
        return None
    if "tail" in given:
        if not given["tail"].isdigit():
            return None
        tail = int(given["tail"])
    machine, on = given.get("machine"), given.get("on")
    return name, follow, tail, machine, on


def agent_logs(argv: list[str]) -> int | None:
    """`orch logs NAME [-f] [-n N] [-m MACHINE] [--on BACKEND]` streamed by the orch agent
    (started if needed) with no pydantic or asyncssh import: the request and its resumption
    after an agent crash are `agent_calls.follow_log`'s, as on the ordinary path
    (`Orchestrator.run_logs`). None: answer it the ordinary way (other words,
    `ORCH_NO_AGENT=1`, or an agent with other settings than this process's)."""
    import asyncio
    from pathlib import Path

    rest, cwd = list(argv), None
    if rest[:1] in (["-C"], ["--project-dir"]) and len(rest) >= 2:
        cwd, rest = rest[1], rest[2:]
    if rest[:1] != ["logs"] or os.environ.get("ORCH_NO_AGENT") == "1":
        return None
    words = _logs_words(rest[1:])
    if words is None:
        return None
    name, follow, tail, machine, on = words
    from sidecar import agent_calls
    from sidecar import agent_client as client
    from sidecar.cli.output import error, failed
    from sidecar.errors import EXIT_FAILED, OrchError

    project = str(Path(cwd or os.getcwd()).absolute())  # as the Orchestrator's cwd
    request = agent_calls.follow_request(
        project, name, tail, machine, follow=follow, on=on, archived=True, env=True
    )

    async def stream() -> None:
        async for text in agent_calls.follow_log(None, request, 15.0):
            sys.stdout.write(text)
            sys.stdout.flush()

    try:
        asyncio.run(stream())
    except agent_calls.EnvDiffers:  # (said before any text): the ordinary path runs it here
        return None
    except client.AgentUnavailable as exc:
        error(str(exc), agent_calls.FOLLOW_HINT.format(name=name))
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        return failed(exc)
    except Exception as exc:  # as run_handler says it
        if os.environ.get("ORCH_DEBUG") == "1" and not isinstance(
            exc, (OrchError, BrokenPipeError)
        ):
            raise
        return failed(exc)
    return 0


def run_handler(handler: Callable[..., object], args: argparse.Namespace) -> int:
    import asyncio

    from sidecar.app import Orchestrator
    from sidecar.cli.output import failed

    debug = os.environ.get("ORCH_DEBUG") == "1"

    async def go() -> int:
        orch = Orchestrator(cwd=args.project_dir, one_shot=True)
        try:
            if args.command not in NO_STATE:
                orch.revive_agent()  # cheap (a stat) unless a dead agent left work
            result = await handler(orch, args)  # type: ignore[misc]
            return int(result or 0)
        finally:
            await orch.close()
            if args.command not in NO_STATE:
                orch.poke_agent()

    try:
        return asyncio.run(go())
    except KeyboardInterrupt as exc:
        return failed(exc)
    except Exception as exc:
        if debug and not isinstance(exc, BrokenPipeError):
            raise
        return failed(exc)


if __name__ == "__main__":
    sys.exit(main())
