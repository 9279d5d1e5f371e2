"""Pure edits of the user's ssh config (orch's one Include line) and the override finder."""

from __future__ import annotations

from remote_config.ssh_config import HostEntry, render_host, ssh_argv
from remote_config.ssh_user_config import (
    add_include,
    find_overrides,
    include_line,
    parse_ssh_g,
    remove_include,
)
from sidecar.ssh.pool import Backoff

LINE = include_line("/home/u/.orch/ssh/config")


def test_include_goes_first_and_keeps_every_other_byte() -> None:
    original = b"Host *\r\n  User bob\r\n# no final newline"
    edited = add_include(original, LINE)
    assert edited == LINE + b"\r\n" + original  # CRLF file: the new line uses CRLF too
    assert add_include(edited, LINE) == edited  # idempotent
    assert remove_include(edited, LINE) == original


def test_include_moves_to_the_top_when_found_lower_down() -> None:
    original = b"Host a\n  User b\n" + LINE + b"\nHost c\n"
    edited = add_include(original, LINE)
    assert edited == LINE + b"\nHost a\n  User b\nHost c\n"


def test_empty_and_missing_files() -> None:
    assert add_include(None, LINE) == LINE + b"\n"
    assert add_include(b"", LINE) == LINE + b"\n"
    assert remove_include(LINE + b"\n", LINE) == b""


def test_paths_with_spaces_are_quoted() -> None:
    assert include_line("/a b/config") == b'Include "/a b/config"'


def test_overrides_are_traced_to_the_users_line() -> None:
    user = "Host web\n  User x\nHost orch-*\n  ControlMaster no\n  Port 2200\nMatch all\n  User y\n"
    wanted = parse_ssh_g("user alice\nport 22\ncontrolmaster auto\n")
    effective = parse_ssh_g("user y\nport 2200\ncontrolmaster false\n")
    found = {o.keyword: o for o in find_overrides(user, "orch-box", wanted, effective, LINE)}
    assert found["controlmaster"].line == 4
    assert found["port"].line == 5
    assert found["user"].line == 7  # the Host web block does not apply to orch-box
    assert "overrides orch's port" in found["port"].message("~/.ssh/config")


def test_host_block_renders_every_option_with_forwards() -> None:
    from remote_config.ssh_config import LocalForwardSpec

    entry = HostEntry(
        alias="orch-p-box",
        hostname="10.0.0.5",
        port=2222,
        user="me",
        identity_file="/k/id",
        known_hosts_file="/k/known hosts",
        host_key_alias="orch-p-box",
        control_path="/tmp/cm/%C",
        compression=True,
        forwards=(LocalForwardSpec(8888, "127.0.0.1", 8889),),
    )
    text = render_host(entry)
    for expected in (
        "ControlMaster auto",
        "ControlPath /tmp/cm/%C",
        "StrictHostKeyChecking yes",
        'UserKnownHostsFile "/k/known hosts"',
        "IdentitiesOnly yes",
        "ServerAliveCountMax",
        "Compression yes",
        "LocalForward 127.0.0.1:8888 127.0.0.1:8889",
    ):
        assert expected in text
    assert "ClearAllForwardings=yes" in ssh_argv("/c", "orch-p-box")


def test_backoff_is_bounded_and_jittered() -> None:
    backoff = Backoff(initial=0.2, factor=2, maximum=10)
    assert backoff.delay(0, rng=lambda: 0.0) == 0.1
    assert backoff.delay(0, rng=lambda: 1.0) == 0.2
    assert backoff.delay(3, rng=lambda: 1.0) == 1.6
    assert backoff.delay(50, rng=lambda: 1.0) == 10
    assert 5 <= backoff.delay(50) <= 10
