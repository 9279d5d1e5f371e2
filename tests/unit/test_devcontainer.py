"""The repository's dev container definition and `orch init devcontainer`.

GitHub's dev container JSON schema (devcontainers/spec, schemas/devContainer.base.schema.json)
is not published on PyPI or npm, so it cannot be fetched here: when ORCH_DEVCONTAINER_SCHEMA
names a copy, the files are validated against it too. Always, they are validated against the
subset below, written from the reference at containers.dev/implementors/json_reference for the
properties orch writes (JSON with comments, image, features as OCI references, ports,
lifecycle commands).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from remote_config import devcontainer

ROOT = Path(__file__).resolve().parents[2]
COMMAND = {
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        {"type": "object", "additionalProperties": {"type": ["string", "array"]}},
    ]
}
SUBSET = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "name": {"type": "string"},
        "image": {"type": "string", "minLength": 1},
        "features": {
            "type": "object",
            "propertyNames": {"pattern": r"^[a-z0-9.-]+(/[a-z0-9._-]+)+:[0-9]+$"},
            "additionalProperties": {"type": ["object", "string", "boolean"]},
        },
        "forwardPorts": {
            "type": "array",
            "items": {
                "oneOf": [
                    {"type": "integer", "minimum": 0, "maximum": 65535},
                    {"type": "string", "pattern": r"^([a-z0-9-]+):(\d{1,5})$"},
                ]
            },
        },
        "postCreateCommand": COMMAND,
        "customizations": {"type": "object"},
    },
    "additionalProperties": False,
}


def parse_jsonc(text: str) -> Any:
    """JSON with // and /* */ comments (outside strings), as dev container files allow."""
    out, i, in_str = [], 0, False
    while i < len(text):
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
            continue
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        else:
            out.append(c)
        i += 1
    return json.loads(re.sub(r",(\s*[}\]])", r"\1", "".join(out)))


def validate(doc: Any) -> None:
    jsonschema.validate(doc, SUBSET)
    official = os.environ.get("ORCH_DEVCONTAINER_SCHEMA")
    if official:
        jsonschema.validate(doc, json.loads(Path(official).read_text()))


def test_repository_devcontainer_is_valid_and_reachable_by_gh() -> None:
    doc = parse_jsonc((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    validate(doc)
    assert devcontainer.SSHD_FEATURE in doc["features"]
    assert "ghcr.io/devcontainers/features/node:1" in doc["features"]
    assert "python" in doc["image"]
    assert doc["postCreateCommand"] == "bash scripts/setup.sh"
    assert (ROOT / "scripts" / "setup.sh").exists()


def test_subset_rejects_what_the_spec_rejects() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate({"image": "x", "features": {"sshd": {}}})  # not an OCI reference
    with pytest.raises(jsonschema.ValidationError):
        validate({"image": "x", "forwardPorts": [70000]})
    with pytest.raises(jsonschema.ValidationError):
        validate({"image": "x", "postCreateCmd": "typo"})


def _init(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli.main", "init", "devcontainer", *args],
        cwd=project, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _written(project: Path) -> Any:
    doc = parse_jsonc((project / ".devcontainer" / "devcontainer.json").read_text())
    validate(doc)
    return doc


def test_init_python_project_with_ports(project: Path, orch_home: Path) -> None:
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (project / "orch.toml").write_text(
        "[[ports]]\nlocal = 8888\n[[ports]]\nlocal = 6006\nremote = 6007\n"
    )
    done = _init(project)
    assert done.returncode == 0, done.stderr
    doc = _written(project)
    assert "python" in doc["image"]
    assert devcontainer.SSHD_FEATURE in doc["features"]
    assert doc["forwardPorts"] == [6007, 8888]
    assert doc["postCreateCommand"] == "pip install -e ."


def test_init_node_project(project: Path, orch_home: Path) -> None:
    (project / "package.json").write_text("{}")
    (project / "package-lock.json").write_text("{}")
    assert _init(project).returncode == 0
    doc = _written(project)
    assert "javascript-node" in doc["image"]
    assert doc["postCreateCommand"] == "npm ci"
    assert "forwardPorts" not in doc
    assert devcontainer.SSHD_FEATURE in doc["features"]


def test_init_never_overwrites_without_force(project: Path, orch_home: Path) -> None:
    (project / ".devcontainer").mkdir()
    mine = project / ".devcontainer" / "devcontainer.json"
    mine.write_text('{"image": "mine"}')
    refused = _init(project)
    assert refused.returncode != 0
    assert "--force" in refused.stderr and mine.read_text() == '{"image": "mine"}'
    assert _init(project, "--force").returncode == 0
    assert _written(project)["image"] != "mine"


def test_detection_and_mixed_projects() -> None:
    assert devcontainer.detect_language({"requirements.txt"}) == "python"
    assert devcontainer.detect_language({"package.json", "setup.py"}) == "python+node"
    assert devcontainer.detect_language({"main.go"}) == "other"
    mixed = devcontainer.render("p", "python+node", [], None)
    assert devcontainer.NODE_FEATURE in mixed["features"]
    assert (
        devcontainer.post_create_command("python", {"scripts/setup.sh"}) == "bash scripts/setup.sh"
    )
