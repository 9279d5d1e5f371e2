"""orch.toml loading: valid files, defaults, and one precise message per problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remote_config.loader import ConfigError, load_config_text
from remote_config.model import EC2Machine, LocalMachine, SSHMachine
from sidecar.config import find_config, load_project_config
from sidecar.errors import ConfigFileError


def load(text: str, root: str = "/home/me/proj"):
    return load_config_text(text, "orch.toml", root)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return [str(p) for p in caught.value.problems]


# (name, orch.toml text, the exact problem lines expected)
MALFORMED = [
    (
        "bad toml: missing quote",
        'x = "abc\n',
        ["orch.toml:1: invalid TOML: Illegal character '\\n'"],
    ),
    (
        "bad toml: bare word value",
        "[project]\nname = demo\n",
        ["orch.toml:2: invalid TOML: Invalid value"],
    ),
    (
        "bad toml: unclosed table",
        "[project\nname = 'x'\n",
        ["orch.toml:1: invalid TOML: Expected ']' at the end of a table declaration"],
    ),
    (
        "duplicate machine table",
        '[machines.gpu]\nkind = "ec2"\n[machines.gpu]\nkind = "ec2"\n',
        ["orch.toml:3: machines.gpu: duplicate machine 'gpu': declared twice"],
    ),
    (
        "duplicate machine names differing in case",
        '[machines.gpu]\nkind = "ec2"\n[machines.GPU]\nkind = "ec2"\n',
        ["orch.toml:3: machines: duplicate machine names 'gpu' and 'GPU'"],
    ),
    (
        "unknown top-level key",
        "[projekt]\nname = 'x'\n",
        ["orch.toml:1: projekt: unknown key 'projekt'; did you mean 'project'?"],
    ),
    (
        "unknown key in project",
        "[project]\ndefault_machin = 'local'\n",
        [
            "orch.toml:2: project.default_machin: unknown key 'default_machin'; did you mean 'default_machine'?"
        ],
    ),
    (
        "unknown key in ec2 machine",
        '[machines.gpu]\nkind = "ec2"\ninstance_typ = "g5.xlarge"\n',
        [
            "orch.toml:3: machines.gpu.instance_typ: unknown key 'instance_typ'; did you mean 'instance_type'?"
        ],
    ),
    (
        "unknown key without a close match",
        "[sync]\nzzz = 1\n",
        [
            "orch.toml:2: sync.zzz: unknown key 'zzz' (allowed: debounce_ms, default_excludes, exclude, "
            "local_dir, remote_dir, use_gitignore)"
        ],
    ),
    (
        "unknown machine kind",
        '[machines.cs]\nkind = "codespace"\n',
        ["orch.toml:2: machines.cs.kind: 'kind' must be one of: local, ssh, ec2, codespaces"],
    ),
    (
        "machine without kind",
        '[machines.cs]\nrepository = "a/b"\n',
        ["orch.toml:1: machines.cs: 'kind' must be one of: local, ssh, ec2, codespaces"],
    ),
    (
        "ssh machine missing host",
        '[machines.box]\nkind = "ssh"\n',
        ["orch.toml:1: machines.box.host: required field is missing"],
    ),
    (
        "codespaces missing repository",
        '[machines.cs]\nkind = "codespaces"\n',
        ["orch.toml:1: machines.cs.repository: required field is missing"],
    ),
    (
        "codespaces bad repository",
        '[machines.cs]\nkind = "codespaces"\nrepository = "nope"\n',
        ["orch.toml:3: machines.cs.repository: must look like 'owner/name' (got 'nope')"],
    ),
    (
        "port too large",
        "[[ports]]\nlocal = 70000\n",
        ["orch.toml:2: ports[0].local: Input should be less than or equal to 65535 (got 70000)"],
    ),
    (
        "port zero",
        "[[ports]]\nlocal = 8888\n[[ports]]\nlocal = 0\n",
        ["orch.toml:4: ports[1].local: Input should be greater than or equal to 1 (got 0)"],
    ),
    (
        "port as string",
        '[[ports]]\nlocal = "8888x"\n',
        ["orch.toml:2: ports[0].local: Input should be a valid integer (got '8888x')"],
    ),
    (
        "ssh port out of range",
        '[machines.box]\nkind = "ssh"\nhost = "h"\nport = 99999\n',
        ["orch.toml:4: machines.box.port: Input should be less than or equal to 65535 (got 99999)"],
    ),
    (
        "same local port forwarded twice",
        "[[ports]]\nlocal = 8888\n[[ports]]\nlocal = 8888\n",
        ["orch.toml:3: ports[1]: local port 8888 is forwarded twice"],
    ),
    (
        "wrong type: exclude not a list",
        '[sync]\nexclude = "data/"\n',
        ["orch.toml:2: sync.exclude: Input should be a valid list (got 'data/')"],
    ),
    (
        "wrong type: bool",
        "[ec2]\n",
        [
            "orch.toml:1: ec2: unknown key 'ec2' (allowed: backends, cost, debug, gpu, jobs, "
            "machines, ports, project, sync)"
        ],
    ),
    (
        "spot not a bool",
        '[machines.gpu]\nkind = "ec2"\nspot = "yes please"\n',
        ["orch.toml:3: machines.gpu.spot: Input should be a valid boolean (got 'yes please')"],
    ),
    (
        "relative remote dir",
        '[sync]\nremote_dir = "work/proj"\n',
        [
            "orch.toml:2: sync.remote_dir: must be absolute or start with '~/' (the remote home) "
            "(got 'work/proj')"
        ],
    ),
    (
        "remote dir escaping with ..",
        '[sync]\nremote_dir = "~/work/../../etc"\n',
        ["orch.toml:2: sync.remote_dir: must not contain '..' (got '~/work/../../etc')"],
    ),
    (
        "empty remote dir",
        '[sync]\nremote_dir = ""\n',
        ["orch.toml:2: sync.remote_dir: must not be empty (got '')"],
    ),
    (
        "empty local dir",
        '[sync]\nlocal_dir = ""\n',
        ["orch.toml:2: sync.local_dir: must be a folder path (got '')"],
    ),
    (
        "default machine not defined",
        '[project]\ndefault_machine = "gpu"\n',
        ["orch.toml:2: project.default_machine: 'gpu' is not a machine (known: local)"],
    ),
    (
        "bad machine name",
        '[machines."my gpu"]\nkind = "ec2"\n',
        [
            "orch.toml:1: machines: machine name 'my gpu': use letters, digits, '-' and '_', starting "
            "alphanumeric"
        ],
    ),
    (
        "bad env var name",
        '[jobs.env]\n"BAD-NAME" = "1"\n',
        ["orch.toml:1: jobs.env: environment variable name 'BAD-NAME' is not valid"],
    ),
    (
        "memory fraction above 1",
        "[gpu]\nmemory_fraction = 1.5\n",
        ["orch.toml:2: gpu.memory_fraction: Input should be less than or equal to 1 (got 1.5)"],
    ),
    (
        "ssh host with leading dash",
        '[machines.box]\nkind = "ssh"\nhost = "-oProxyCommand=x"\n',
        [
            "orch.toml:3: machines.box.host: must be a host name or address without spaces or a leading "
            "'-' (got '-oProxyCommand=x')"
        ],
    ),
    (
        "forward to an undefined machine",
        "[[ports]]\nlocal = 9000\nmachine = 'nope'\n",
        ["orch.toml:3: ports[0].machine: machine 'nope' is not defined"],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_file_gets_one_precise_message_per_problem(
    text: str, expected: list[str]
) -> None:
    assert problems(text) == expected


def test_there_are_at_least_twenty_malformed_cases() -> None:
    assert len(MALFORMED) >= 20


def test_several_problems_are_all_reported_with_their_lines() -> None:
    text = (
        "[project]\nname = 'demo'\ndefault_machin = 'gpu'\n\n"
        "[machines.gpu]\nkind = 'ec2'\ninstance_typ = 'g5'\n\n[[ports]]\nlocal = 70000\n"
    )
    found = problems(text)
    assert found == [
        "orch.toml:3: project.default_machin: unknown key 'default_machin'; did you mean "
        "'default_machine'?",
        "orch.toml:7: machines.gpu.instance_typ: unknown key 'instance_typ'; did you mean "
        "'instance_type'?",
        "orch.toml:10: ports[0].local: Input should be less than or equal to 65535 (got 70000)",
    ]


def test_empty_file_is_the_default_project() -> None:
    cfg = load("", root="/home/me/my proj")
    assert cfg.project_name == "my-proj"
    name, machine = cfg.machine()
    assert name == "local" and isinstance(machine, LocalMachine)
    assert cfg.remote_dir == "~/work/my-proj"
    assert cfg.local_dir == "/home/me/my proj"


def test_full_valid_file() -> None:
    cfg = load(
        """
[project]
name = "vma"
default_machine = "gpu"

[machines.gpu]
kind = "ec2"
instance_type = "g5.xlarge"
spot = true

[machines.box]
kind = "ssh"
host = "10.0.0.5"
user = "ubuntu"

[sync]
local_dir = "src"
remote_dir = "/srv/vma/"
exclude = ["*.ckpt"]

[[ports]]
local = 8888

[[ports]]
local = 6006
remote = 16006
machine = "gpu"

[jobs.env]
PYTHONUNBUFFERED = "1"
"""
    )
    assert cfg.project_name == "vma"
    name, gpu = cfg.machine()
    assert name == "gpu" and isinstance(gpu, EC2Machine) and gpu.spot
    assert isinstance(cfg.machine("box")[1], SSHMachine)
    assert cfg.local_dir == "/home/me/proj/src"
    assert cfg.remote_dir == "/srv/vma"
    assert [p.remote_port for p in cfg.config.ports] == [8888, 16006]
    assert cfg.config.jobs.env == {"PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize(
    ("local_dir", "expected"),
    [
        (".", "/home/me/proj"),
        ("..", "/home/me"),
        ("a/./b/../c", "/home/me/proj/a/c"),
        ("/abs/path", "/abs/path"),
        ("/abs/../x", "/abs/../x"),
    ],
)
def test_local_dir_resolution(local_dir: str, expected: str) -> None:
    cfg = load(f'[sync]\nlocal_dir = "{local_dir}"\n')
    assert cfg.local_dir == expected


def test_find_config_walks_up(tmp_path: Path) -> None:
    (tmp_path / "orch.toml").write_text("[project]\nname = 'up'\n")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_config(deep) == tmp_path / "orch.toml"
    cfg = load_project_config(deep)
    assert cfg.project_name == "up" and cfg.root == str(tmp_path)


def test_no_config_means_defaults(tmp_path: Path) -> None:
    cfg = load_project_config(tmp_path)
    assert cfg.path is None and cfg.machine()[0] == "local"


def test_project_config_error_names_the_real_file(tmp_path: Path) -> None:
    (tmp_path / "orch.toml").write_text("[project]\nnam = 'x'\n")
    with pytest.raises(ConfigFileError) as caught:
        load_project_config(tmp_path)
    assert (
        f"{tmp_path / 'orch.toml'}:2: project.nam: unknown key 'nam'; did you mean 'name'?"
        in str(caught.value)
    )
    assert "orch config schema" in (caught.value.hint or "")


def test_non_utf8_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "orch.toml").write_bytes(b"name = '\xff\xfe'\n")
    with pytest.raises(ConfigFileError, match="not UTF-8"):
        load_project_config(tmp_path)


def test_schema_is_valid_json_schema_with_descriptions() -> None:
    from sidecar.app import Orchestrator

    schema = Orchestrator.config_schema()
    json.dumps(schema)
    assert schema["title"] == "orch.toml"
    assert set(schema["properties"]) == {
        "project",
        "machines",
        "backends",
        "sync",
        "ports",
        "jobs",
        "debug",
        "gpu",
        "cost",
    }
    kinds = {
        d["properties"]["kind"]["const"]
        for d in schema["$defs"].values()
        if "kind" in d.get("properties", {})
    }
    assert kinds == {"local", "ssh", "ec2", "codespaces", "fargate"}


def test_the_starter_orch_toml_is_valid_and_every_commented_line_is_too() -> None:
    from remote_config.loader import load_config_text
    from remote_config.starter import starter_toml

    text = starter_toml("demo-1")
    assert load_config_text(text, "/p/orch.toml", "/p").project_name == "demo-1"
    # Uncommenting every example line still gives a valid file.
    lines = [
        line[2:] if line.startswith("# ") and ("=" in line or line[2:].startswith("[")) else line
        for line in text.splitlines()
    ]
    resolved = load_config_text("\n".join(lines), "/p/orch.toml", "/p")
    assert resolved.config.ports[0].local == 8888
    assert "gpu" in resolved.config.machine_names()
