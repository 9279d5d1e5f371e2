"""The GitHub client and the codespaces provider against the validating API stand-in.

Every request orch sends and every answer the stand-in gives is checked against GitHub's
published OpenAPI description (tests/codespaces_api), so a request GitHub would reject fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from remote_config.model import CodespacesMachine
from sidecar.errors import AuthenticationFailed, MachineNotRunning
from sidecar.layout import Layout
from sidecar.machines import registry
from sidecar.machines.codespaces import CodespacesProvider
from sidecar.machines.github_api import GitHubClient, RateLimited, find_token, retry_after_s


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _provider(
    orch_home: Path, client: GitHubClient | None = None, **fields: Any
) -> CodespacesProvider:
    spec = CodespacesMachine(kind="codespaces", repository="octo/proj", **fields)
    provider = CodespacesProvider("cs", spec, Layout.from_env(), "proj", client=client)
    provider.poll_interval_s = 0.0
    return provider


async def _no_pin(name: str) -> None:  # the gh channel is tested in tests/integration
    return None


async def test_up_creates_then_polls_to_available(github_api: Any, orch_home: Path) -> None:
    provider = _provider(orch_home, idle_timeout_minutes=45, retention_period_minutes=600,
                         geo="EuropeWest", branch="dev", devcontainer_path=".devcontainer/devcontainer.json")  # fmt: skip
    provider._pin = _no_pin  # type: ignore[method-assign]
    seen: list[str] = []
    info = await provider.up(progress=seen.append)
    assert info.state == "running" and info.address in github_api.codespaces
    posts = [body for method, path, body in github_api.requests if method == "POST"]
    assert posts == [
        {
            "ref": "dev",
            "machine": "basicLinux32gb",
            "devcontainer_path": ".devcontainer/devcontainer.json",
            "idle_timeout_minutes": 45,
            "retention_period_minutes": 600,
            "display_name": "orch proj cs",
            "geo": "EuropeWest",
        }
    ]
    assert any("Queued" in s for s in seen) and any("Starting" in s for s in seen)
    assert info.machine_type == "standardLinux32gb" and info.idle_timeout_minutes == 45
    assert info.price_per_hour == 0.36  # 4 cores


async def test_up_finds_existing_by_display_name_and_starts_it(
    github_api: Any, orch_home: Path
) -> None:
    first = _provider(orch_home)
    first._pin = _no_pin  # type: ignore[method-assign]
    name = (await first.up()).address
    down = await first.down()
    assert down.state == "stopping"
    assert (await first.status()).state == "stopping"  # GitHub takes a moment
    assert (await first.status()).state == "stopped"
    # A fresh laptop (no record) finds it by repository + display name, and starts it.
    (Layout.from_env().machine_dir("cs") / "codespace.json").unlink()
    second = _provider(orch_home)
    second._pin = _no_pin  # type: ignore[method-assign]
    info = await second.up()
    assert info.address == name and info.state == "running"
    assert len(github_api.codespaces) == 1
    assert ("POST", f"/user/codespaces/{name}/start", None) in github_api.requests


async def test_delete_warns_about_unpushed_work(github_api: Any, orch_home: Path) -> None:
    provider = _provider(orch_home)
    provider._pin = _no_pin  # type: ignore[method-assign]
    name = (await provider.up()).address
    assert await provider.terminate_warnings() == []
    github_api.codespaces[name]["git_status"].update(
        ahead=2, has_unpushed_changes=True, has_uncommitted_changes=True, ref="dev"
    )
    warnings = await provider.terminate_warnings()
    assert any("uncommitted" in w for w in warnings)
    assert any("2 ahead" in w for w in warnings)
    info = await provider.terminate()
    assert github_api.codespaces == {}
    assert "deleted" in (info.detail or "")
    assert (await provider.status()).state == "not-created"
    with pytest.raises(MachineNotRunning):
        await provider.ssh_target()


async def test_missing_codespace_scope_is_refused_up_front(
    github_api: Any, orch_home: Path
) -> None:
    github_api.scopes = "repo, read:org"
    with pytest.raises(AuthenticationFailed) as caught:
        await _provider(orch_home).status()
    assert "codespace" in caught.value.message
    assert "gh auth refresh" in (caught.value.hint or "")
    assert [p for _, p, _ in github_api.requests] == ["/user"]  # nothing else was tried


async def test_bad_token_says_how_to_log_in_and_never_shows_it(
    github_api: Any, orch_home: Path
) -> None:
    token = "ghp_wrong-secret-value-123"
    client = GitHubClient(token=token)
    with pytest.raises(AuthenticationFailed) as caught:
        await _provider(orch_home, client=client).status()
    text = f"{caught.value} {caught.value.hint} {client!r}"
    assert "gh auth login" in text and token not in text


async def test_fine_grained_token_without_scope_header_is_accepted(
    github_api: Any, orch_home: Path
) -> None:
    github_api.scopes = None
    assert (await _provider(orch_home).status()).state == "not-created"


@pytest.mark.parametrize("status", [403, 429])
async def test_rate_limit_waits_retry_after(github_api: Any, orch_home: Path, status: int) -> None:
    sleeps = Sleeps()
    client = GitHubClient(sleep=sleeps)
    await client.check_scopes()
    github_api.fail_next = [(status, {"Retry-After": "7"}), (status, {"Retry-After": "2"})]
    assert await client.list_for_repo("octo/proj") == []
    assert sleeps.waits == [7.0, 2.0]
    await client.aclose()


async def test_rate_limit_longer_than_the_bound_gives_up(github_api: Any, orch_home: Path) -> None:
    sleeps = Sleeps()
    client = GitHubClient(sleep=sleeps, max_rate_wait_s=30)
    await client.check_scopes()
    github_api.fail_next = [
        (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9999999999"})
    ]
    with pytest.raises(RateLimited) as caught:
        await client.list_for_repo("octo/proj")
    assert sleeps.waits == [] and "retry in" in caught.value.message
    await client.aclose()


async def test_machines_lists_types(github_api: Any, orch_home: Path) -> None:
    client = GitHubClient()
    machines = await client.machines("octo/proj", ref="main")
    assert machines[0]["cpus"] == 4
    await client.aclose()


async def test_invalid_request_fails_against_the_description(
    github_api: Any, orch_home: Path
) -> None:
    """The stand-in rejects what GitHub would: proof the validation is live."""
    client = GitHubClient()
    with pytest.raises(Exception, match="422"):
        await client.create("octo/proj", idle_timeout_minutes="soon")
    await client.aclose()
    assert github_api.violations and "idle_timeout_minutes" in github_api.violations[0]
    github_api.violations.clear()


def test_token_sources(tmp_path: Path) -> None:
    assert find_token({"GITHUB_TOKEN": "a", "GH_TOKEN": "b"}) == "a"
    assert find_token({"GH_TOKEN": "b", "PATH": ""}) == "b"
    gh = tmp_path / "gh"
    gh.write_text("#!/bin/sh\n[ \"$1 $2\" = 'auth token' ] && echo from-gh\n")
    gh.chmod(0o755)
    assert find_token({"PATH": str(tmp_path)}) == "from-gh"
    with pytest.raises(AuthenticationFailed):
        find_token({"PATH": ""})


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "12"}) == 12.0
    assert retry_after_s({"retry-after": "Thu, 01 Jan 2026 00:01:00 GMT"}, now=1767225600.0) == 60.0
    reset = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1050"}
    assert retry_after_s(reset, now=1000.0) == 50.0
    assert retry_after_s({}) is None


def test_registry_and_capabilities() -> None:
    caps = registry.capabilities("codespaces")
    assert caps.creates and caps.can_terminate and caps.has_cost
    assert caps.reach == ["proxy_command"]


async def test_state_files_never_hold_the_token(github_api: Any, orch_home: Path) -> None:
    provider = _provider(orch_home)
    provider._pin = _no_pin  # type: ignore[method-assign]
    await provider.up()
    files = [p for p in Path(orch_home).rglob("*") if p.is_file()]
    assert any(p.name == "codespace.json" for p in files)
    for path in files:
        assert github_api.TOKEN not in path.read_text(errors="replace")


def test_long_job_warning_points_at_ec2(orch_home: Path) -> None:
    provider = _provider(orch_home, idle_timeout_minutes=30)
    assert provider.long_job_warning(20 * 60) is None
    warning = provider.long_job_warning(2 * 3600) or ""
    assert "120 min" in warning and "30 min" in warning and "EC2" in warning


async def test_ssh_target_proxies_through_gh_and_says_how_to_install_it(
    orch_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sidecar.errors import UsageError
    from sidecar.ssh import keys

    provider = _provider(orch_home)
    provider._save(name="proj-1-abc", user="codespace", pinned_for="proj-1-abc")
    keys.pin_host_key(provider.layout, provider.alias, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEc4")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError) as caught:
        await provider.ssh_target()
    assert "cli.github.com" in (caught.value.hint or "")
    gh = tmp_path / "gh"
    gh.write_text("#!/bin/sh\n")
    gh.chmod(0o755)
    target = await provider.ssh_target()
    assert target.proxy_command == (
        f"{gh} codespace ssh -c proj-1-abc --stdio -- -i {provider.layout.client_key}"
    )
    assert target.user == "codespace" and target.host_key_alias == provider.alias


async def test_concurrent_calls_on_one_provider_do_not_close_each_others_client(
    github_api: Any, orch_home: Path
) -> None:
    """The orch agent reads a machine's status while a window's command runs on the same
    provider: the first call to end must not close the HTTP client under the others."""
    import asyncio

    cs = github_api._create("octo/proj", {"display_name": "orch proj cs"})
    cs["state"] = "Available"
    provider = _provider(orch_home)
    statuses = await asyncio.gather(
        *(provider.status() for _ in range(4)), provider.terminate_plan()
    )
    assert all(s.state == "running" for s in statuses[:4])
    assert cs["name"] in str(statuses[4])
    assert provider._calls == 0 and provider.client._http is None  # closed after the last
