"""Proxied reach (pure renderers and the model) and the machine-kind registry."""

from __future__ import annotations

import pytest

from remote_config.loader import ConfigError, load_config_text
from remote_config.ssh_config import HostEntry, expand_proxy_command, parse_jump, render_host
from sidecar.errors import OrchError
from sidecar.machines import registry


def _entry(**kw: object) -> HostEntry:
    base: dict[str, object] = dict(
        alias="orch-p-box",
        hostname="box.internal",
        port=22,
        user="me",
        identity_file="/k",
        known_hosts_file="/kh",
        host_key_alias="orch-p-box",
        control_path="/c/%C",
    )
    base.update(kw)
    return HostEntry(**base)  # type: ignore[arg-type]


def test_proxy_command_is_written_raw_and_host_keys_stay_strict() -> None:
    text = render_host(_entry(proxy_command="ssh -W %h:%p bastion"))
    assert "    ProxyCommand ssh -W %h:%p bastion\n" in text
    assert "StrictHostKeyChecking yes" in text and "ProxyJump" not in text


def test_proxy_jump_is_written_quoted() -> None:
    text = render_host(_entry(proxy_jump="ops@bastion:2222"))
    assert "    ProxyJump ops@bastion:2222\n" in text and "ProxyCommand" not in text


def test_no_proxy_no_lines() -> None:
    text = render_host(_entry())
    assert "Proxy" not in text


def test_expand_proxy_command_quotes_what_it_substitutes() -> None:
    argv = expand_proxy_command("nc %h %p # %r %%", "a;rm -rf ~", 2222, "me")
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[2] == "exec nc 'a;rm -rf ~' 2222 # me %"


@pytest.mark.parametrize(
    ("jump", "want"),
    [
        ("bastion", ("bastion", 22, "me")),
        ("ops@bastion:2200", ("bastion", 2200, "ops")),
        ("[::1]:2201", ("::1", 2201, "me")),
    ],
)
def test_parse_jump(jump: str, want: tuple[str, int, str]) -> None:
    assert parse_jump(jump, "me") == want


def _toml(extra: str) -> str:
    return f'[machines.box]\nkind = "ssh"\nhost = "h"\n{extra}'


def test_both_proxies_are_refused_with_a_line() -> None:
    with pytest.raises(ConfigError, match="proxy_jump or proxy_command, not both"):
        load_config_text(_toml('proxy_jump = "b"\nproxy_command = "nc %h %p"\n'), "orch.toml", "/p")


@pytest.mark.parametrize("bad", ['proxy_jump = "-oProxyCommand=x"', 'proxy_jump = "a b"'])
def test_bad_jump_hosts_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        load_config_text(_toml(bad + "\n"), "orch.toml", "/p")


def test_registry_knows_kinds_and_their_capabilities() -> None:
    assert {"local", "ssh"} <= set(registry.kinds())
    local, ssh = registry.capabilities("local"), registry.capabilities("ssh")
    assert local.can_stop and not local.has_cost
    assert not ssh.can_stop and "proxy_command" in ssh.reach


def test_unknown_kind_says_what_is_supported() -> None:
    with pytest.raises(OrchError) as caught:
        registry.provider_class("mainframe")
    assert "supported kinds" in (caught.value.hint or "")
