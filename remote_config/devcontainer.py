"""Pure renderer of a `.devcontainer/devcontainer.json` for a project orch works on.

The file is what GitHub Codespaces (and VS Code Dev Containers) build: a base image for the
project's language, the sshd feature that `gh codespace ssh` (and so orch) needs, Node or
Python as a feature where the project mixes them, the forwarded ports from orch.toml and a
postCreateCommand that installs the project's dependencies. Detection of the language from
the tree happens in the caller (`sidecar/cli/init_cmds.py`); this module does no I/O.
"""

from __future__ import annotations

import json
from typing import Any, Literal

Language = Literal["python", "node", "python+node", "other"]

SSHD_FEATURE = "ghcr.io/devcontainers/features/sshd:1"
NODE_FEATURE = "ghcr.io/devcontainers/features/node:1"
PYTHON_FEATURE = "ghcr.io/devcontainers/features/python:1"
IMAGES: dict[Language, str] = {
    "python": "mcr.microsoft.com/devcontainers/python:3.12-bookworm",
    "node": "mcr.microsoft.com/devcontainers/javascript-node:20-bookworm",
    "python+node": "mcr.microsoft.com/devcontainers/python:3.12-bookworm",
    "other": "mcr.microsoft.com/devcontainers/base:bookworm",
}
EXTENSIONS: dict[Language, list[str]] = {
    "python": ["ms-python.python", "ms-python.debugpy"],
    "node": ["dbaeumer.vscode-eslint"],
    "python+node": ["ms-python.python", "ms-python.debugpy", "dbaeumer.vscode-eslint"],
    "other": [],
}


def detect_language(names: set[str]) -> Language:
    """The project's language from the file names at its root."""
    python = bool(names & {"pyproject.toml", "setup.py", "setup.cfg", "requirements.txt",
                           "Pipfile", "environment.yml"})  # fmt: skip
    node = "package.json" in names
    if python and node:
        return "python+node"
    return "python" if python else "node" if node else "other"


def post_create_command(language: Language, names: set[str]) -> str | None:
    """The set-up the codespace runs once after it is built."""
    steps = []
    if "scripts/setup.sh" in names:  # the project has its own set-up script
        return "bash scripts/setup.sh"
    if language in ("python", "python+node"):
        if "requirements.txt" in names:
            steps.append("pip install -r requirements.txt")
        elif "pyproject.toml" in names or "setup.py" in names:
            steps.append("pip install -e .")
    if language in ("node", "python+node"):
        steps.append("npm ci" if "package-lock.json" in names else "npm install")
    return " && ".join(steps) or None


def render(
    name: str, language: Language, ports: list[int], post_create: str | None
) -> dict[str, Any]:
    features: dict[str, dict[str, Any]] = {SSHD_FEATURE: {}}  # gh codespace ssh needs sshd
    if language == "python+node":
        features[NODE_FEATURE] = {"version": "20"}
    doc: dict[str, Any] = {"name": name, "image": IMAGES[language], "features": features}
    if ports:
        doc["forwardPorts"] = sorted(set(ports))
    if post_create:
        doc["postCreateCommand"] = post_create
    if EXTENSIONS[language]:
        doc["customizations"] = {"vscode": {"extensions": EXTENSIONS[language]}}
    return doc


def render_text(name: str, language: Language, ports: list[int], post_create: str | None) -> str:
    header = (
        "// Written by `orch init devcontainer`: the environment GitHub Codespaces builds.\n"
        "// The sshd feature lets `gh codespace ssh` (and so orch) reach the codespace.\n"
    )
    return header + json.dumps(render(name, language, ports, post_create), indent=2) + "\n"
