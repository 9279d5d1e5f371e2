"""`orch init devcontainer`: write a `.devcontainer/devcontainer.json` for the project.

The language is detected from the files at the project's root, the forwarded ports come from
orch.toml's `[[ports]]`, and the sshd feature that `gh codespace ssh` needs is always in.
An existing file is never replaced without `--force`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from remote_config import devcontainer
from sidecar.app import Orchestrator
from sidecar.errors import Conflict
from sidecar.state import atomic_write


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = sub.add_parser("init", help="write starter files for the project")
    verbs = init.add_subparsers(dest="verb", required=True, metavar="WHAT")
    dc = verbs.add_parser(
        "devcontainer",
        help="write .devcontainer/devcontainer.json (for GitHub Codespaces)",
        description="Detects the project's language, adds the sshd feature orch needs on a "
        "codespace and forwards the ports from orch.toml.",
    )
    dc.add_argument("--force", action="store_true", help="replace an existing file")
    dc.set_defaults(handler=cmd_devcontainer)


def _root_names(root: Path) -> set[str]:
    names = {p.name for p in root.iterdir()}
    if (root / "scripts" / "setup.sh").is_file():
        names.add("scripts/setup.sh")
    return names


async def cmd_devcontainer(orch: Orchestrator, args: argparse.Namespace) -> int:
    root = Path(orch.config.root)
    target = root / ".devcontainer" / "devcontainer.json"
    if target.exists() and not args.force:
        raise Conflict(
            f"{target} exists; nothing was changed",
            hint="run `orch init devcontainer --force` to replace it",
        )
    names = _root_names(root)
    language = devcontainer.detect_language(names)
    ports = [f.remote_port for f in orch.config.config.ports]
    text = devcontainer.render_text(
        orch.config.project_name, language, ports, devcontainer.post_create_command(language, names)
    )
    target.parent.mkdir(exist_ok=True)
    atomic_write(target, text, mode=0o644)
    print(f"wrote {target} ({language} project, sshd feature included)")
    return 0
