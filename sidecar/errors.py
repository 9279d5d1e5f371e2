"""orch's error hierarchy: errors are values users can act on.

Every error carries what failed (`message`), what to do next (`hint`) and the CLI exit code
for its family, so the CLI, the language server and tests treat them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

# What a front end with buttons may offer for an error (`OrchError.action`), acting on
# `OrchError.target`: start the machine named by target (then retry); open the file at target.
ACTIONS = ("machine.up", "open.file")

# Documented exit codes (docs/cli.md).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_NOT_FOUND = 4
EXIT_UNREACHABLE = 5
EXIT_CONFLICT = 6
EXIT_INTERRUPTED = 130


class OrchError(Exception):
    """Base: something failed; `hint` says what the user can do about it."""

    exit_code: ClassVar[int] = EXIT_FAILED

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        action: str | None = None,
        target: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint  # for a terminal: the command to run
        # For an editor: what a button can do about it (see ACTIONS), and on what.
        self.action = action
        self.target = target

    @property
    def kind(self) -> str:
        return type(self).__name__

    def __str__(self) -> str:
        return self.message


class UsageError(OrchError):
    exit_code = EXIT_USAGE


class ConfigFileError(OrchError):
    """orch.toml is malformed; the message lists every problem with its line, and `problems`
    holds them one by one (remote_config.loader.ConfigProblem) for editors."""

    exit_code = EXIT_CONFIG

    def __init__(
        self, message: str, hint: str | None = None, *, problems: Sequence[Any] = ()
    ) -> None:
        super().__init__(message, hint)
        self.problems = list(problems)


class NotFound(OrchError):
    """An unknown job, machine or port forward."""

    exit_code = EXIT_NOT_FOUND


class MachineNotRunning(OrchError):
    exit_code = EXIT_UNREACHABLE


class ConnectionFailed(OrchError):
    """The machine could not be reached (base of the connection errors)."""

    exit_code = EXIT_UNREACHABLE


class Unreachable(ConnectionFailed):
    pass


class ConnectTimeout(ConnectionFailed):
    pass


class AuthenticationFailed(ConnectionFailed):
    pass


class HostKeyMismatch(ConnectionFailed):
    pass


class Conflict(OrchError):
    """The operation would clash with something that exists: a running job, a busy port."""

    exit_code = EXIT_CONFLICT


class JobsRunning(Conflict):
    """Stopping the machine would end (or hide) jobs that still run there."""


class PortBusy(Conflict):
    pass


class DebuggerNotReady(OrchError):
    """A debug job's debugpy did not come to listen (the job ended first, or too slow)."""


class RemoteCommandFailed(OrchError):
    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        exit_status: int | None = None,
        stderr: str = "",
    ) -> None:
        super().__init__(message, hint)
        self.exit_status = exit_status
        self.stderr = stderr


class UserFileError(OrchError):
    """A file of the user's (such as ~/.ssh/config) cannot be changed safely (read-only, a
    folder, unreadable); nothing was. Not a conflict with something orch runs: exit 1."""

    exit_code = EXIT_FAILED


class CloudError(OrchError):
    """A cloud API refused or failed a call; `code` is the provider's error code."""

    def __init__(self, message: str, hint: str | None = None, *, code: str | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


class CloudCredentialsError(CloudError):
    """No credentials, expired ones, or credentials lacking a permission."""


class CloudConfigError(CloudError):
    """A cloud value in orch.toml is wrong (region, AMI, subnet, instance type)."""

    exit_code = EXIT_CONFIG


class MissingDependency(OrchError):
    """An optional library or tool (boto3, the AWS CLI, its SSM plugin) is not installed."""
