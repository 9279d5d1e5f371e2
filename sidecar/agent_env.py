"""The settings digest a client sends with each request to the local orch agent.

The agent runs with the environment of whoever started it. A request carrying `env_key()`
is answered only by an agent started with the same values of the variables that change what
orch does (which cloud account, which ssh config…); another answers `env_differs` and the
client runs the command itself (docs/agent.md). Standard library only, like
`sidecar.agent_client`, which re-exports it.
"""

from __future__ import annotations

import json
import os

# Variables that change what an operation does (which cloud account, which ssh config…). A
# client that sends `env_key()` with a request gets `env_differs` instead of a result from an
# agent started with other values; variables about the client itself are left out.
_ENV_PREFIXES = ("AWS_", "ORCH_", "GITHUB_", "GH_", "CODESPACE")
_ENV_NAMES = ("HOME", "USER")
_CLIENT_ONLY = (
    "ORCH_NO_AGENT",
    "ORCH_AGENT_TIMEOUT_S",
    "ORCH_AGENT_IDLE_S",
    "ORCH_AGENT_STOP_GRACE_S",
    "ORCH_AGENT_STALL_S",
    "ORCH_DEBUG",
    "ORCH_TEST_RUN",
    "ORCH_HOME",  # the same agent by construction
    "ORCH_LOG_LEVEL",
)


def env_key(environ: dict[str, str] | None = None) -> str:
    """A digest of the variables that change what orch does (not their values)."""
    import hashlib

    env = os.environ if environ is None else environ
    chosen = sorted(
        (k, v)
        for k, v in env.items()
        if (k.startswith(_ENV_PREFIXES) or k in _ENV_NAMES) and k not in _CLIENT_ONLY
    )
    return hashlib.sha256(json.dumps(chosen).encode()).hexdigest()[:16]
