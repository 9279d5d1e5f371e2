"""`orch run/stop/restart/rm` answered by the orch agent with no pydantic or asyncssh import,
and the text those commands print on either path.

Like `orch status` and `orch logs` (`cli/main.py`), these commands have a standard-library
light path for their plain argument forms: the words are read here (`job_words`,
`run_words`), the same allow-listed `call` requests the ordinary path sends
(`Orchestrator.run_call`, with this process's `agent_client.env_key()`) go to the agent
(started, or an older one replaced, first: `agent_client.ensure`), and the JSON results are
printed with the same texts as `jobs_cmds` prints (the functions below, used by both paths)
or, with `--json`, as the same JSON. Anything else returns None and the ordinary parser and
handler run: other word forms (`--help`, `--machine=M` before `orch run`'s NAME, `-e`,
`--expect`, `--debug`), a word the ordinary parser would refuse, `ORCH_NO_AGENT=1`,
`ORCH_DEBUG=1` (tracebacks) and an agent started with other settings (`env_differs`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

VERBS = ("run", "stop", "restart", "rm")
RUN_HINT = "orch run NAME -- CMD ARG...  or  orch run NAME 'CMD LINE'"
FAILED_HINT = "see `orch status` for what happened, then try again"  # as Orchestrator.agent_call


# -- the texts (both paths) -------------------------------------------------------------------
def job_state_text(job: Any) -> str:
    if job.state in ("failed", "stopped", "interrupted") and job.exit_code is not None:
        return f"{job.state} ({job.exit_code})"
    return str(job.state)


def started_text(job: Any) -> str:
    return f"started {job.name} ({job_state_text(job)}); follow it with: orch logs {job.name} -f"


def stopped_text(before: Any, job: Any) -> str:
    if before.state != "running" and before.pid is None:  # (interrupted: may still run)
        return f"{job.name} is not running ({job_state_text(job)}); nothing to stop"
    code = "unknown" if job.exit_code is None else job.exit_code
    return f"stopped {job.name} (exit status {code})"


def restarted_text(job: Any) -> str:
    return f"restarted {job.name} ({job_state_text(job)})"


def removed_text(name: str, backend: str | None, purge: bool) -> str:
    where = "in CloudWatch Logs" if backend else f"in ~/logs/{name} on the machine"
    kept = "" if purge else f" (its logs are kept {where})"
    return f"removed {name}{kept}"


# -- the words ----------------------------------------------------------------------------------
def job_words(verb: str, words: list[str]) -> dict[str, Any] | None:
    """`orch stop|restart|rm`'s words (NAME, `--json` or `--purge`, `-m M`, `--on B`) as the
    ordinary parser reads them: {name, json, purge, machine, on}; None for anything else."""
    flag = "--purge" if verb == "rm" else "--json"
    values = {"-m": "machine", "--machine": "machine", "--on": "on"}
    got: dict[str, Any] = {"name": None, "json": False, "purge": False, "machine": None}
    got["on"] = None
    words = list(words)
    while words:
        word = words.pop(0)
        if word == flag:
            got[flag[2:]] = True
        elif word in values and words and not words[0].startswith("-"):
            got[values[word]] = words.pop(0)
        elif word.startswith("-") or got["name"] is not None:
            return None
        else:
            got["name"] = word
    return got if got["name"] is not None else None


_RUN_FLAGS = {
    "--replace": ("replace", True),
    "--json": ("json", True),
    "--snapshot": ("snapshot", True),
    "--no-snapshot": ("snapshot", False),
    "--live": ("snapshot", False),
}
_RUN_VALUES = {"-m": "machine", "--machine": "machine", "--on": "on", "--outputs": "outputs"}


def run_words(words: list[str]) -> dict[str, Any] | None:
    """`orch run [options] NAME [options] (-- CMD ARG... | 'CMD LINE')` as the ordinary path
    reads it: the options before NAME as its parser does (exact option words only), the
    rest with its own scanner (`job_options`, as `jobs_cmds.parse_run_args`):
    {name, command, json, machine, replace, snapshot, on, outputs}. None for `-e`,
    `--expect`, `--debug`, any other option form before NAME, or words it refuses."""
    from sidecar.cli.job_options import JobOptions, command_words, take_options
    from sidecar.errors import UsageError

    opts, words = JobOptions(), list(words)
    while words and words[0].startswith("-"):
        word = words.pop(0)
        if word in _RUN_FLAGS:
            setattr(opts, *_RUN_FLAGS[word])
        elif word in _RUN_VALUES and words and not words[0].startswith("-"):
            setattr(opts, _RUN_VALUES[word], words.pop(0))
        else:
            return None  # `--`, `-e`, `--machine=M`, `--help`…: the parser's
    if not words:
        return None
    try:
        rest = take_options(words[1:], opts, hint=RUN_HINT, allow_debug=True)
        command = command_words(rest, words[0], RUN_HINT)
    except UsageError:
        return None  # the ordinary path says it
    if opts.env or opts.expect_s is not None or opts.debug:
        return None
    return {
        "name": words[0],
        "command": command,
        "json": opts.json,
        "machine": opts.machine,
        "replace": opts.replace,
        "snapshot": opts.snapshot,
        "on": opts.on,
        "outputs": opts.outputs,
    }


# -- asking the agent ---------------------------------------------------------------------------
class _Ordinary(Exception):
    """The agent runs with other settings: the ordinary path runs the command here."""


_found: list[Any] = []  # the agent's paths, once `ensure` has found (or started) it


def _ask(project: str, method: str, machine: str | None, params: dict[str, Any]) -> Any:
    """One allow-listed call in the agent, as `Orchestrator.agent_call` sends it: its
    result as JSON, its error raised as its OrchError class."""
    from sidecar import agent_client as client
    from sidecar.agent_calls import CALL_GRACE_S, CALL_TIMEOUTS_S

    request: dict[str, Any] = {"op": "call", "project": project, "machine": machine}
    request["method"] = method
    request |= {"params": params, "env": client.env_key()}
    timeout = CALL_TIMEOUTS_S[method] + CALL_GRACE_S
    try:
        if not _found:  # (once per command: `stop` asks twice)
            _found.append(client.ensure(client.home_from_env())[0])
        try:
            reply = client.call(_found[0], request, timeout=timeout)
        except client.AgentDown:  # not run (none answered, or it was stopping): once more
            _found[0] = client.ensure(client.home_from_env())[0]
            reply = client.call(_found[0], request, timeout=timeout)
    except client.AgentUnavailable as exc:  # as Orchestrator.agent_call says it
        from sidecar.errors import OrchError

        raise OrchError(f"{method}: {exc}", hint=FAILED_HINT) from None
    if reply.get("env_differs"):
        raise _Ordinary
    client.raise_reply(reply)
    return reply.get("result")


def _job(result: Any) -> SimpleNamespace:
    return SimpleNamespace(**result)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))  # as output.print_json


def _run(project: str, verb: str, words: list[str]) -> int | None:
    if verb == "run":
        run = run_words(words)
        if run is None:
            return None
        show_json, machine = run.pop("json"), run.pop("machine")
        job = _ask(project, "jobs_run", machine, {**run, "env": {}})
        _print_json(job) if show_json else print(started_text(_job(job)))
        return 0
    got = job_words(verb, words)
    if got is None:
        return None
    name, machine, on = got["name"], got["machine"], got["on"]
    params = {"name": name, "on": on}
    if verb == "stop":
        before = _ask(project, "jobs_info", machine, params)
        job = _ask(project, "jobs_stop", machine, params)
        _print_json(job) if got["json"] else print(stopped_text(_job(before), _job(job)))
    elif verb == "restart":
        job = _ask(project, "jobs_restart", machine, params)
        _print_json(job) if got["json"] else print(restarted_text(_job(job)))
    else:
        backend = _ask(project, "job_backend_of", machine, params)
        _ask(project, "jobs_rm", machine, {**params, "purge": got["purge"]})
        print(removed_text(name, backend, got["purge"]))
    return 0


def agent_jobs(argv: list[str]) -> int | None:
    """`orch run/stop/restart/rm` in their plain forms, through the agent (see the module
    docstring); None: answer it the ordinary way."""
    rest, cwd = list(argv), None
    if rest[:1] in (["-C"], ["--project-dir"]) and len(rest) >= 2:
        cwd, rest = rest[1], rest[2:]
    if not rest or rest[0] not in VERBS:
        return None
    if os.environ.get("ORCH_NO_AGENT") == "1" or os.environ.get("ORCH_DEBUG") == "1":
        return None
    from sidecar.cli.output import failed

    project = str(Path(cwd or os.getcwd()).absolute())  # as the Orchestrator's cwd
    _found.clear()
    try:
        return _run(project, rest[0], rest[1:])
    except _Ordinary:
        return None
    except KeyboardInterrupt as exc:  # (the socket closes: the agent cancels the call)
        return failed(exc)
    except Exception as exc:  # as run_handler says it
        return failed(exc)
