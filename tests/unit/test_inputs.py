"""Hostile input to the pure layer: port numbers and forward specs, orch.toml types and
shapes, ssh config quoting of odd $ORCH_HOME paths, reverse forwards and per-machine
connection settings in the rendered Host block (issue 13)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from remote_config.loader import ConfigError, load_config_text
from remote_config.ports import PortSyntaxError, check_port, parse_forward, parse_port
from remote_config.ssh_config import HostEntry, LocalForwardSpec, quote_value, render_config


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0", "0 is not a port"),
        ("65536", "out of range"),
        ("70000", "out of range"),
        ("-1", "not a port number"),
        ("+80", "not a port number"),
        ("08080", "leading zero"),
        ("00", "0 is not a port"),
        ("8e3", "not a port number"),
        ("８０", "not a port number"),  # full-width digits: str.isdigit() says yes
        ("", "not a port number"),
        (" ", "not a port number"),
        ("99999999999999999999", "not a port number"),
    ],
)
def test_bad_ports_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(PortSyntaxError, match=why):
        parse_port(text)


def test_good_ports_parse() -> None:
    assert [parse_port(p) for p in ("1", "80", "8080", "65535")] == [1, 80, 8080, 65535]


@pytest.mark.parametrize("value", [0, -1, 65536, True, False, 80.0, "80", None])
def test_check_port_refuses_non_ports_from_any_front_end(value: object) -> None:
    with pytest.raises(PortSyntaxError):
        check_port(value)


@pytest.mark.parametrize(
    "spec",
    ["a:0", "18555:70000", "18556:0", "0", "1:2:3:4", "80:", ":80", "80:bad host:81", "8:-x:9"],
)
def test_bad_forward_specs_are_refused(spec: str) -> None:
    with pytest.raises(PortSyntaxError):
        parse_forward(spec)


def test_forward_specs() -> None:
    assert parse_forward("8888").remote_port is None
    assert parse_forward("8888:8000").remote_port == 8000
    got = parse_forward("8888:db.internal:5432")
    assert (got.local_port, got.remote_host, got.remote_port) == (8888, "db.internal", 5432)
    assert parse_forward("8001", reverse=True).local_port == 8001
    with pytest.raises(PortSyntaxError, match="REMOTE_PORT"):
        parse_forward("8001:h:9", reverse=True)


# -- orch.toml ----------------------------------------------------------------------------------


def problems(text: str) -> list[str]:
    try:
        load_config_text(text, "orch.toml", "/p")
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[[ports]]\nlocal = true\n",
            "orch.toml:2: ports[0].local: Input should be a valid integer",
        ),
        (
            '[sync]\nuse_gitignore = "yes"\n',
            "orch.toml:2: sync.use_gitignore: Input should be a valid boolean",
        ),
        (
            "[sync]\ndebounce_ms = 1.5\n",
            "orch.toml:2: sync.debounce_ms: Input should be a valid integer",
        ),
        ("[jobs]\nsnapshot = 1\n", "orch.toml:2: jobs.snapshot: Input should be a valid boolean"),
        ('[machines.local]\ncompression = "yes"\n', "orch.toml:2: machines.local.compression"),
        (
            "[machines.local]\nserver_alive_interval = 0\n",
            "orch.toml:2: machines.local.server_alive_interval: Input should be greater than",
        ),
        (
            "[[ports]]\nlocal = 0\n",
            "orch.toml:2: ports[0].local: Input should be greater than or equal to 1",
        ),
        ("[[ports]]\nlocal = 80\nremote = 65536\n", "orch.toml:3: ports[0].remote"),
        ('[[ports]]\nlocal = 80\nremote_host = "a b"\n', "orch.toml:3: ports[0].remote_host"),
        (
            '[project]\nname = "x"\n\ndefault_machine = "nope"\n',
            "orch.toml:4: project.default_machine: 'nope' is not a machine (known: local)",
        ),
        (
            "[[ports]]\nlocal = 80\nreverse = true\n[[ports]]\nlocal = 81\nremote = 80\n"
            "reverse = true\n",
            "orch.toml:4: ports[1]: remote port 80 is forwarded twice",
        ),
    ],
)
def test_types_are_strict_and_every_problem_has_a_line(text: str, expected: str) -> None:
    found = problems(text)
    assert found and found[0].startswith(expected), found


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 2000 + "]" * 2000,
        "a = " + "{b = " * 500 + "1" + "}" * 500,
        "[[ports]]\nlocal = " + "[" * 100 + "]" * 100,
        "x = [" + "[" * 30 + "1" + "]" * 30 + "]",
    ],
)
def test_deep_nesting_is_a_clear_error_not_a_recursion_error(text: str) -> None:
    found = problems(text)
    assert len(found) == 1 and "values are nested too deeply (more than 16 levels)" in found[0]
    assert found[0].startswith(("orch.toml:1:", "orch.toml:2:")), found


def test_local_machine_table_without_kind_is_accepted_as_docs_say() -> None:
    cfg = load_config_text(
        "[machines.local]\nport = 2222\nserver_alive_interval = 60\nserver_alive_count_max = 10\n"
        "compression = true\n",
        "orch.toml",
        "/p",
    ).config
    _, machine = cfg.machine("local")
    assert machine.kind == "local" and machine.port == 2222  # type: ignore[union-attr]
    assert (machine.server_alive_interval, machine.server_alive_count_max) == (60, 10)
    assert machine.compression is True
    # Another machine still needs its kind.
    assert "'kind' must be one of" in problems("[machines.gpu]\nport = 22\n")[0]


def test_connection_settings_default_to_todays_values() -> None:
    _, machine = load_config_text("", "orch.toml", "/p").config.machine()
    assert (machine.server_alive_interval, machine.server_alive_count_max) == (15, 4)
    assert machine.compression is False


# -- ssh config -------------------------------------------------------------------------------


def _entry(home: str, **extra: object) -> HostEntry:
    return HostEntry(
        alias="orch-x",
        hostname="127.0.0.1",
        port=2222,
        user="me",
        identity_file=f"{home}/keys/id",
        known_hosts_file=f"{home}/ssh/known_hosts",
        host_key_alias="orch-x",
        control_path=f"{home}/cm/%C",
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("home", ["/tmp/it's mine", '/tmp/say "hi"', "/tmp/a b#c", "/tmp/plain"])
def test_quotes_in_orch_home_reach_openssh_intact(home: str, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(render_config([_entry(home)]))
    shown = subprocess.run(
        ["ssh", "-G", "-F", str(config), "orch-x"], capture_output=True, text=True, check=True
    ).stdout
    assert f"identityfile {home}/keys/id\n" in shown
    assert f"userknownhostsfile {home}/ssh/known_hosts\n" in shown


@pytest.mark.parametrize("value", ["a'b\"c", "back\\slash", "new\nline", "nul\x00"])
def test_unrepresentable_values_are_refused_not_mangled(value: str) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        quote_value(value)


def test_reverse_forward_keepalive_and_compression_are_rendered(tmp_path: Path) -> None:
    entry = _entry(
        "/h",
        server_alive_interval=60,
        server_alive_count_max=10,
        compression=True,
        forwards=(
            LocalForwardSpec(8888, "127.0.0.1", 8000),
            LocalForwardSpec(8001, "127.0.0.1", 9001, reverse=True),
        ),
    )
    config = tmp_path / "config"
    config.write_text(render_config([entry]))
    shown = subprocess.run(
        ["ssh", "-G", "-F", str(config), "orch-x"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "remoteforward [127.0.0.1]:9001 [127.0.0.1]:8001" in shown
    assert "localforward [127.0.0.1]:8888 [127.0.0.1]:8000" in shown
    assert {"serveraliveinterval 60", "serveralivecountmax 10", "compression yes"} <= set(shown)


def test_orch_home_that_openssh_cannot_name_is_refused_at_start() -> None:
    from sidecar.errors import UsageError
    from sidecar.layout import check_home

    for bad in ("/tmp/100%", "/tmp/${HOME}", "/tmp/a\\b", '/tmp/it\'s "x"'):
        with pytest.raises(UsageError, match="ORCH_HOME"):
            check_home(Path(bad))
    assert check_home(Path("/tmp/it's")) == Path("/tmp/it's")
