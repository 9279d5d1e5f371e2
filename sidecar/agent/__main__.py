"""`python -m sidecar.agent serve [--detach]` runs the agent; `stop` ends it (and forgets what
it ran); `info` prints what it owns. Clients start it on demand (`client.ensure`).

`serve --detach` reports its start ("ok pid N", "busy: …" or "error: …") on stderr, not
stdout: a script that starts it (bench/cli.py) keeps its stdout for its own output;
`agent_client.spawn` reads the report there."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys

from sidecar import agent_client as client
from sidecar import daemon
from sidecar.layout import Layout

IDLE_EXIT_S = float(os.environ.get("ORCH_AGENT_IDLE_S", "600"))


async def _serve(layout: Layout, notify: object) -> int:
    from sidecar.agent.server import Agent

    agent = Agent(layout, idle_exit_s=IDLE_EXIT_S)
    if not await agent.start():
        notify("busy: another orch agent runs")  # type: ignore[operator]
        return 0
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(agent.stop(keep_wanted=True)))
    notify(f"ok pid {os.getpid()}")  # type: ignore[operator]
    await agent.done.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orch-agent")
    parser.add_argument("verb", choices=("serve", "stop", "info"))
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args(argv)
    layout = Layout.from_env()
    paths = client.agent_paths(layout)
    if args.verb in ("stop", "info"):
        if not client.alive(paths):
            if args.verb == "stop" and paths.wanted.exists():
                paths.wanted.unlink()  # stopped on purpose: nothing to bring back
            print("the orch agent is not running")
            return 0
        try:
            reply = client.call(paths, {"op": "shutdown" if args.verb == "stop" else "info",
                                        "forget": True})  # fmt: skip
        except client.AgentUnavailable as exc:
            print(f"orch agent: {exc}", file=sys.stderr)
            return 1
        print("the orch agent stops" if args.verb == "stop" else json.dumps(reply, indent=2))
        return 0
    paths.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    ready = daemon.start(paths.log, "the orch agent", background=args.detach, report_to="stderr")
    if isinstance(ready, int):
        return ready
    try:
        return asyncio.run(_serve(layout, ready.say))
    except Exception as exc:
        logging.getLogger("orch.agent").exception("the orch agent failed")
        ready.say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
