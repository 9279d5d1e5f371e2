"""`orch config show|schema|path|init`."""

from __future__ import annotations

import argparse
import json

from sidecar.app import Orchestrator
from sidecar.cli.output import print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser("config", help="show the resolved config or its JSON Schema")
    verbs = config.add_subparsers(dest="verb", required=True, metavar="VERB")
    show = verbs.add_parser("show", help="print the resolved project config")
    show.add_argument("--json", action="store_true", help="print as JSON")
    show.set_defaults(handler=cmd_show)
    schema = verbs.add_parser("schema", help="print the JSON Schema of orch.toml")
    schema.set_defaults(handler=cmd_schema)
    path = verbs.add_parser("path", help="print the path of the orch.toml in use")
    path.set_defaults(handler=cmd_path)
    init = verbs.add_parser("init", help="write a starter orch.toml here (never overwrites)")
    init.set_defaults(handler=cmd_init)


async def cmd_init(orch: Orchestrator, args: argparse.Namespace) -> int:
    path, written = orch.config_init()
    print(f"wrote {path}" if written else f"{path} exists; left as it is")
    return 0


async def cmd_show(orch: Orchestrator, args: argparse.Namespace) -> int:
    shown = orch.config_show()
    if args.json:
        print_json(shown)
        return 0
    print(f"# file: {shown['file'] or '(none: defaults)'}")
    print(
        f"# project: {shown['project_name']}  local: {shown['local_dir']}  "
        f"remote: {shown['remote_dir']}"
    )
    print(_to_toml(shown["config"]))
    return 0


async def cmd_schema(orch: Orchestrator, args: argparse.Namespace) -> int:
    print(json.dumps(orch.config_schema(), indent=2))
    return 0


async def cmd_path(orch: Orchestrator, args: argparse.Namespace) -> int:
    path = orch.config.path
    print(path or "(no orch.toml: running on defaults)")
    return 0


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    return json.dumps(str(value))


def _to_toml(config: dict[str, object], prefix: str = "") -> str:
    """A readable TOML rendering of the resolved config (None values left out)."""
    out: list[str] = []
    nested: list[tuple[str, object]] = []
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else key
        if value is None:
            continue
        if (isinstance(value, dict) and value) or (
            isinstance(value, list) and value and all(isinstance(i, dict) for i in value)
        ):
            nested.append((name, value))
        else:
            out.append(f"{key} = {_toml_value(value)}")
    for name, value in nested:
        if isinstance(value, list):
            out.extend(f"\n[[{name}]]\n{_to_toml(item, name)}" for item in value)
        else:
            assert isinstance(value, dict)
            out.append(f"\n[{name}]\n{_to_toml(value, name)}")
    return "\n".join(out).strip("\n")
