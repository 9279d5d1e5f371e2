"""GitHub's published OpenAPI description, cut down to the endpoints orch's codespaces use.

The description ships in the npm package @octokit/openapi (13 MB of JSON in a 385 MB
package). It is installed once into a cache outside the checkout ($ORCH_DEV_CACHE, default
~/.cache/orch-dev/openapi), cut to the paths below plus every component they reference, and
the cut (about 0.3 MB) is cached beside it. Tests skip with the reason when neither the cut
nor npm is available.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

OCTOKIT_VERSION = "23.0.2"
PATHS = {
    "/user": ["get"],
    "/repos/{owner}/{repo}/codespaces": ["get", "post"],
    "/repos/{owner}/{repo}/codespaces/machines": ["get"],
    "/user/codespaces/{codespace_name}": ["get", "delete"],
    "/user/codespaces/{codespace_name}/start": ["post"],
    "/user/codespaces/{codespace_name}/stop": ["post"],
}


def cache_dir() -> Path:
    return Path(os.environ.get("ORCH_DEV_CACHE", Path.home() / ".cache" / "orch-dev")) / "openapi"


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/"):
            out.add(ref)
        for value in node.values():
            _refs(value, out)
    elif isinstance(node, list):
        for value in node:
            _refs(value, out)


def cut(full: dict[str, Any]) -> dict[str, Any]:
    """The given paths and methods plus the transitive closure of their component refs."""
    paths = {
        p: {m: op for m, op in full["paths"][p].items() if m in methods or m == "parameters"}
        for p, methods in PATHS.items()
    }
    components: dict[str, dict[str, Any]] = {}
    todo: set[str] = set()
    _refs(paths, todo)
    done: set[str] = set()
    while todo:
        ref = todo.pop()
        if ref in done:
            continue
        done.add(ref)
        _, _, section, name = ref.split("/", 3)
        node = full["components"][section][name]
        components.setdefault(section, {})[name] = node
        _refs(node, todo)
    return {
        "openapi": full["openapi"],
        "info": full["info"],
        "servers": full["servers"],
        "paths": paths,
        "components": components,
    }


def load_cut() -> dict[str, Any]:
    """The cut description (made and cached on first use); raises RuntimeError with why not."""
    folder = cache_dir()
    cached = folder / f"codespaces-{OCTOKIT_VERSION}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    full_path = folder / "node_modules/@octokit/openapi/generated/api.github.com.json"
    if not full_path.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed once to fetch @octokit/openapi (GitHub's API spec)")
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder),
             f"@octokit/openapi@{OCTOKIT_VERSION}"],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if done.returncode != 0 or not full_path.exists():
            raise RuntimeError(f"npm install @octokit/openapi failed: {done.stderr[-500:]}")
    spec = cut(json.loads(full_path.read_text()))
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec))
    tmp.replace(cached)
    return spec
