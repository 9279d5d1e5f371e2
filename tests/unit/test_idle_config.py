"""`[machines.X] idle_stop / ttl / ttl_hard / stop_action`: parsing, errors, kind defaults."""

from __future__ import annotations

import pytest

from remote_config.loader import ConfigError, load_config_text
from remote_config.model import IdleSettings
from sidecar.errors import ConfigFileError
from sidecar.idle.policy import policy_for
from sidecar.machines.base import Capabilities
from sidecar.machines.registry import capabilities


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "orch.toml", "/home/me/proj")
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'idle_stop = "30 minutes"',
            "orch.toml:4: machines.box.idle_stop: '30 minutes' is not a duration: write a "
            "number and a unit, e.g. '30m', '24h', '1h30m' or '90s' (units: s, m, h, d) "
            "(got '30 minutes')",
        ),
        (
            "ttl = 24",
            "orch.toml:4: machines.box.ttl: write a duration in quotes, e.g. '30m' or '24h', "
            "or 'off' (got 24)",
        ),
        (
            'stop_action = "halt"',
            "orch.toml:4: machines.box.stop_action: Input should be 'stop' or 'terminate' "
            "(got 'halt')",
        ),
        ('idle_stop = "0m"', "orch.toml:4: machines.box.idle_stop: '0m': the duration must be"),
        (
            'idle_stop = "5m"\nidle_stopp = "1m"',
            "orch.toml:5: machines.box.idle_stopp: unknown key 'idle_stopp'; did you mean 'idle_stop'?",
        ),
    ],
)
def test_bad_idle_settings_are_reported_precisely(line: str, expected: str) -> None:
    text = f'[machines.box]\nkind = "ssh"\nhost = "h"\n{line}\n'
    found = problems(text)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_settings_parse() -> None:
    cfg = load_config_text(
        '[machines.box]\nkind = "ssh"\nhost = "h"\nidle_stop = "1h30m"\nttl = "24h"\n'
        'ttl_hard = true\nstop_action = "terminate"\n[machines.local]\nkind = "local"\nidle_stop = false\n',
        "orch.toml",
        "/p",
    ).config
    box = cfg.machines["box"]
    assert (box.idle_stop, box.ttl, box.ttl_hard, box.stop_action) == (
        "1h30m",
        "24h",
        True,
        "terminate",
    )
    assert cfg.machines["local"].idle_stop == "off"


CLOUD = Capabilities(
    creates=True, can_stop=True, can_terminate=True, has_cost=True, has_idle_stop=True
)


def test_defaults_follow_capabilities_not_kind_names() -> None:
    assert policy_for("x", IdleSettings(), CLOUD).idle_stop_s == 30 * 60
    assert policy_for("x", IdleSettings(), capabilities("ssh")).idle_stop_s is None
    assert policy_for("x", IdleSettings(), capabilities("local")).idle_stop_s is None
    on = policy_for("x", IdleSettings(idle_stop="10m", ttl="2h"), capabilities("ssh"))
    assert (on.idle_stop_s, on.ttl_s, on.ttl_hard) == (600, 7200, False)
    assert policy_for("x", IdleSettings(idle_stop="off"), CLOUD).idle_stop_s is None


def test_terminate_needs_a_kind_that_can_terminate() -> None:
    with pytest.raises(ConfigFileError, match="cannot be terminated"):
        policy_for("box", IdleSettings(stop_action="terminate"), capabilities("ssh"))
    assert policy_for("c", IdleSettings(stop_action="terminate"), CLOUD).idle_stop_s == 1800


def test_interval_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_IDLE_INTERVAL", "0.5")
    assert policy_for("x", IdleSettings(), CLOUD).interval_s == 0.5
    monkeypatch.setenv("ORCH_IDLE_INTERVAL", "soon")
    with pytest.raises(ConfigFileError):
        policy_for("x", IdleSettings(), CLOUD)
