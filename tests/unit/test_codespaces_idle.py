"""The idle agent's stop action on a codespace: its hook is a command (no secret in it) that
stops or deletes the codespace through the API; run here as the agent runs it, against the
validating GitHub API stand-in."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from remote_config.idle import Decision
from remote_config.model import CodespacesMachine
from sidecar.idle.agent import Agent
from sidecar.idle.hooks import stop_hook
from sidecar.layout import Layout
from sidecar.machines.base import MachineInfo
from sidecar.machines.codespaces import CodespacesProvider

STOP = Decision(action="stop", reason="idle 30 min", idle_s=1800, idle_since=0)


def _hook(github_api: Any, name: str | None, stop_action: str = "stop") -> dict[str, Any]:
    spec = CodespacesMachine(kind="codespaces", repository="octo/proj", stop_action=stop_action)
    provider = CodespacesProvider("cs", spec, Layout.from_env(), "proj")
    info = MachineInfo(name="cs", kind="codespaces", state="running", address=name)
    hook = stop_hook(provider, info, stop_action)
    if hook["kind"] == "command":
        hook["argv"][0] = sys.executable  # the machine's python3, here this one
    return hook


def _codespace(github_api: Any) -> str:
    cs = github_api._create("octo/proj", {"display_name": "orch proj cs"})
    cs["state"] = "Available"
    return str(cs["name"])


def _act(tmp_path: Path, hook: dict[str, Any]) -> tuple[bool, list[dict[str, Any]]]:
    (tmp_path / ".orch").mkdir(exist_ok=True)
    agent = Agent(tmp_path)
    done = agent.act(STOP, {"hook": hook})
    lines = (tmp_path / ".orch" / "idle.log").read_text().splitlines()
    return done, [json.loads(line) for line in lines]


def test_the_agent_stops_its_codespace_through_the_api(
    github_api: Any, tmp_path: Path, orch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _codespace(github_api)
    hook = _hook(github_api, name)
    assert github_api.TOKEN not in json.dumps(hook)  # the config shipped to the machine
    monkeypatch.setenv("ORCH_CODESPACES_TOKEN", github_api.TOKEN)  # the Codespaces secret
    done, log = _act(tmp_path, hook)
    assert done, log
    assert github_api.codespaces[name]["state"] == "ShuttingDown"
    assert ("POST", f"/user/codespaces/{name}/stop", None) in github_api.requests
    assert github_api.TOKEN not in json.dumps(log)


def test_stop_action_terminate_deletes_it(
    github_api: Any, tmp_path: Path, orch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _codespace(github_api)
    monkeypatch.setenv("ORCH_CODESPACES_TOKEN", github_api.TOKEN)
    done, _ = _act(tmp_path, _hook(github_api, name, stop_action="terminate"))
    assert done and github_api.codespaces == {}


def test_without_a_token_the_agent_logs_why_and_keeps_watching(
    github_api: Any, tmp_path: Path, orch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _codespace(github_api)
    for key in ("ORCH_CODESPACES_TOKEN", "GH_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    done, log = _act(tmp_path, _hook(github_api, name))
    assert not done  # not over: GitHub's idle timeout stays the stop
    assert log[-1]["action"] == "error"
    assert "set the Codespaces secret ORCH_CODESPACES_TOKEN" in log[-1]["reason"]
    assert github_api.codespaces[name]["state"] == "Available"


def test_a_refused_token_is_logged_with_the_api_answer(
    github_api: Any, tmp_path: Path, orch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _codespace(github_api)
    monkeypatch.setenv("ORCH_CODESPACES_TOKEN", "ghp_wrong")
    done, log = _act(tmp_path, _hook(github_api, name))
    assert not done
    assert "HTTP 401" in log[-1]["reason"] and "Bad credentials" in log[-1]["reason"]
    assert "ghp_wrong" not in json.dumps(log)


def test_no_codespace_name_yet_is_report_only(github_api: Any, orch_home: Path) -> None:
    assert _hook(github_api, None)["kind"] == "report"
    assert os.environ.get("ORCH_GITHUB_API_URL") == github_api.url
