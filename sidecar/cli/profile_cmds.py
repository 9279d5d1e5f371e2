"""`orch profile`: a GPU profiling session on the machine, its trace brought back."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from remote_config.jobs import parse_env_assignments
from sidecar.app import Orchestrator
from sidecar.cli import dispatch
from sidecar.cli.output import print_json
from sidecar.errors import UsageError

EPILOG = """\
Runs `python -m gpu.profiling` as a job (the machine needs orch's `gpu` extra; set
[gpu] python in orch.toml to its interpreter), streams its output, then copies trace.json and
summary.json (and flame.svg with --py-spy) into ./profiles/<job>/. Open the trace in
https://ui.perfetto.dev or chrome://tracing, the flame graph in a browser. Arguments after `--`
go to gpu.profiling unchanged."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "profile",
        help="profile the GPU image service on the machine",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-m", "--machine", help="machine name (default: the project's default)")
    p.add_argument("--model", choices=["birefnet", "sam2"], default="birefnet")
    p.add_argument("--requests", type=int, default=4, help="profiled batches (default 4)")
    p.add_argument("--batch-size", type=int, default=None, help="default: [gpu] batch_size")
    p.add_argument("--lanes", type=int, default=None, help="stream lanes; default [gpu] streams")
    p.add_argument("--size", type=int, default=512, help="image side in px (default 512)")
    p.add_argument("--sequential", action="store_true", help="one item at a time (baseline)")
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="build the models with random weights (no checkpoint needed)",
    )
    p.add_argument(
        "--py-spy",
        action="store_true",
        help="also record a py-spy flame graph (flame.svg); needs py-spy on the machine",
    )
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, default=None, help="local folder (default ./profiles)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("extra", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_profile)


async def cmd_profile(orch: Orchestrator, args: argparse.Namespace) -> int:
    from sidecar.results import ProfileRequest, ProfileResult

    extra = list(args.extra)
    if extra and extra[0] == "--":
        extra = extra[1:]
    try:
        env = parse_env_assignments(args.env)
        request = ProfileRequest(
            model=args.model,
            requests=args.requests,
            batch_size=args.batch_size,
            lanes=args.lanes,
            size=args.size,
            sequential=args.sequential,
            random_weights=args.random_weights,
            py_spy=args.py_spy,
            extra=extra,
            env=env,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    def show(chunk: str) -> None:
        if not args.json:
            sys.stdout.write(chunk)
            sys.stdout.flush()

    out = str(args.out.absolute()) if args.out is not None else None  # (the agent's cwd differs)
    result = await dispatch.call(
        orch, "profile", ProfileResult, args.machine, show, request=request.model_dump(), out=out
    )
    if args.json:
        print_json(result)
        return 0
    print(f"\nfetched into {result.local_dir}:")
    for path in result.files:
        print(f"  {path}")
    print("open trace.json in https://ui.perfetto.dev (or chrome://tracing)")
    if args.py_spy:
        spy = result.summary.get("py_spy") or {}
        if spy.get("flamegraph"):
            print(f"flame graph: {result.local_dir}/{spy['flamegraph']} (open it in a browser)")
        else:
            print(f"no flame graph: {spy.get('reason') or 'py-spy did not run'}")
    return 0
