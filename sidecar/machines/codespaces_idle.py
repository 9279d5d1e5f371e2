"""The idle agent's stop action on a codespace: stop (or delete) it through GitHub's API.

GitHub's own idle timeout (`idle_timeout_minutes`, set when orch creates the codespace)
counts only terminal and editor activity, so it can suspend a codespace under a running job
and keeps an idle one alive while a forgotten terminal ticks. orch's agent on the codespace
knows when jobs end: once every signal is quiet for `idle_stop` it runs this hook, a small
stdlib script that POSTs `/user/codespaces/NAME/stop` (or DELETEs it when
`stop_action = "terminate"`).

The token is never written to the machine by orch: the script reads it from the agent's
environment (`ORCH_CODESPACES_TOKEN`, set as a Codespaces user secret with the codespace
scope, then `GH_TOKEN`). Without one it exits non-zero, the agent logs why in
`~/.orch/idle.log`, and GitHub's idle timeout remains the stop.
"""

from __future__ import annotations

import os
from typing import Any

from sidecar.idle.hooks import register_stop_hook
from sidecar.machines.base import MachineInfo, Provider
from sidecar.machines.github_api import API_VERSION, DEFAULT_URL

# argv: API base URL, codespace name, "stop" | "delete". Runs with the machine's python3.
STOP_SCRIPT = """\
import json, os, sys, urllib.error, urllib.request
base, name, action = sys.argv[1:4]
token = os.environ.get("ORCH_CODESPACES_TOKEN") or os.environ.get("GH_TOKEN") or ""
if not token:
    sys.exit("no token to stop codespace %s: set the Codespaces secret ORCH_CODESPACES_TOKEN "
             "(a token with the codespace scope); GitHub's idle timeout stops it instead" % name)
url = "%s/user/codespaces/%s%s" % (base, name, "/stop" if action == "stop" else "")
request = urllib.request.Request(url, method="POST" if action == "stop" else "DELETE", headers={
    "Authorization": "Bearer " + token, "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": sys.argv[4], "User-Agent": "orch-idle-agent"})
try:
    with urllib.request.urlopen(request, timeout=60) as response:
        print("%s codespace %s: HTTP %s" % (action, name, response.status))
except urllib.error.HTTPError as exc:
    detail = exc.read().decode("utf-8", "replace")[:300]
    sys.exit("%s codespace %s failed: HTTP %s %s" % (action, name, exc.code, detail))
except OSError as exc:
    sys.exit("%s codespace %s failed: %s" % (action, name, exc))
"""


def stop_argv(base_url: str, name: str, stop_action: str, python: str = "python3") -> list[str]:
    """The command the agent runs on the codespace (no secret in it)."""
    action = "delete" if stop_action == "terminate" else "stop"
    return [python, "-c", STOP_SCRIPT, base_url.rstrip("/"), name, action, API_VERSION]


def _hook(provider: Provider, info: MachineInfo, stop_action: str) -> dict[str, Any]:
    if not info.address:  # the codespace's name; unknown only while it does not exist
        return {"kind": "report", "note": "the codespace's name is not known yet"}
    base = os.environ.get("ORCH_GITHUB_API_URL") or DEFAULT_URL
    return {"kind": "command", "argv": stop_argv(base, info.address, stop_action)}


register_stop_hook("codespaces", _hook)
