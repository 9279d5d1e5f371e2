"""The one option parser of commands that start a job (`orch run`, `orch debug`).

Options come between the job name and the command (`orch run NAME [options] -- CMD...`), so
argparse cannot see them without eating the command's own flags; this small scanner stops
at the first word that is not an option, or at `--`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from sidecar.errors import UsageError


@dataclass
class JobOptions:
    env: list[str] = field(default_factory=list)
    replace: bool = False
    json: bool = False
    machine: str | None = None
    snapshot: bool | None = None
    debug: bool = False
    on: str | None = None
    outputs: str | None = None
    expect_s: float | None = None  # how long the job should run (`--expect 2h`)

    def environment(self) -> dict[str, str]:
        """The `-e KEY=VALUE` assignments, checked (UsageError on a bad one)."""
        # (imported here: the rest of this module is standard library, for `orch run`'s
        # light path, `sidecar.cli.fast_jobs`)
        from remote_config.jobs import parse_env_assignments

        try:
            return parse_env_assignments(self.env)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def take_options(
    words: list[str], opts: JobOptions, *, hint: str, allow_debug: bool = False
) -> list[str]:
    """Consume the leading options of `words` into `opts`; returns the remaining words."""
    while words and words[0].startswith("-") and words[0] != "--":
        word, words = words[0], words[1:]
        key, eq, value = word.partition("=")
        if word == "--replace":
            opts.replace = True
        elif word == "--json":
            opts.json = True
        elif word == "--debug" and allow_debug:
            opts.debug = True
        elif word in ("--snapshot", "--no-snapshot", "--live"):
            opts.snapshot = word == "--snapshot"
        elif key in ("-e", "--env", "-m", "--machine", "--on", "--outputs", "--expect"):
            if not eq:
                if not words:
                    raise UsageError(f"{word} needs a value", hint=hint)
                value, words = words[0], words[1:]
            if key in ("-e", "--env"):
                opts.env.append(value)
            elif key == "--on":
                opts.on = value
            elif key == "--outputs":
                opts.outputs = value
            elif key == "--expect":
                opts.expect_s = parse_duration(value)
            else:
                opts.machine = value
        else:
            raise UsageError(
                f"unknown option {word!r} before the command",
                hint=f"put the command after '--': {hint}",
            )
    return words


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str | None) -> float | None:
    """`--expect` durations in seconds: 90m, 2h, 1h30m, 45s (None stays None)."""
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise UsageError(f"--expect {text!r} is not a duration", hint="for example 90m, 2h, 1h30m")
    h, m, s = (int(g or 0) for g in match.groups())
    return float(h * 3600 + m * 60 + s)


def command_words(words: list[str], name: str, hint: str) -> str | list[str]:
    """The command after the options: `-- ARGV...` (a list), or one command line (a str)."""
    if words and words[0] == "--":
        if len(words) == 1:
            raise UsageError("nothing follows '--': give the command to run", hint=hint)
        return words[1:]
    if len(words) == 1:
        return words[0]
    if words:
        return words
    raise UsageError(f"no command given for job {name!r}", hint=hint)


def as_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else command
