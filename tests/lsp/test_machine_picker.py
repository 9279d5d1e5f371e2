"""The editor's machine picker over the real sidecar (pytest-lsp): `orch.machine.list` lists
every machine of orch.toml with kind, state and $/h (a codespace read from the validating
GitHub API stand-in, an ssh machine that does not answer, the embedded local machine),
`orch.machine.select` switches the machine the editor acts on without a restart, and
`orch.machine.terminatePlan` / `orch.machine.terminate` delete a codespace after naming
what would be lost."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.lsp.helpers import execute, module_home, status_notifications, wait_for_status

pytestmark = pytest.mark.asyncio(loop_scope="module")

HOME = module_home("picker")
PROJECT = HOME / "project"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module", autouse=True)
def stand_in(github_spec: dict[str, Any]) -> Iterator[Any]:
    """The stand-in and the environment the sidecar inherits: autouse, so it is set up
    before pytest-lsp starts the server (which happens before the client's arguments)."""
    from tests.codespaces_api.fake import FakeCodespacesAPI

    fake = FakeCodespacesAPI(github_spec)
    env = {
        "ORCH_GITHUB_API_URL": fake.url,
        "GITHUB_TOKEN": fake.TOKEN,
        "ORCH_HOME": str(HOME / "orch-home"),
        "ORCH_SSH_USER_CONFIG": str(HOME / "user-ssh-config"),
    }
    saved = {k: os.environ.get(k) for k in [*env, "GH_TOKEN"]}
    os.environ.update(env)
    os.environ.pop("GH_TOKEN", None)
    PROJECT.mkdir(parents=True, exist_ok=True)
    (PROJECT / "orch.toml").write_text(
        '[project]\nname = "proj"\n'
        '[machines.cs]\nkind = "codespaces"\nrepository = "octo/proj"\n'
        f'[machines.box]\nkind = "ssh"\nhost = "127.0.0.1"\nport = {_closed_port()}\n'
    )
    try:
        yield fake
    finally:
        fake.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert fake.violations == [], "\n".join(fake.violations)


@pytest_lsp.fixture(
    scope="module", config=ClientServerConfig(server_command=[sys.executable, "-m", "sidecar"])
)
async def client(lsp_client: LanguageClient, stand_in: Any):
    status_notifications(lsp_client)
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            root_uri=PROJECT.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=PROJECT.as_uri(), name="project")],
            initialization_options={"clientName": "pytest"},
        )
    )
    yield
    await lsp_client.shutdown_session()


def _codespace(stand_in: Any, **git: Any) -> str:
    cs = stand_in._create("octo/proj", {"display_name": "orch proj cs"})
    cs["state"] = "Available"
    cs["git_status"].update(git)
    return str(cs["name"])


async def test_lists_every_machine_with_kind_state_and_price(
    client: LanguageClient, stand_in: Any
) -> None:
    name = _codespace(stand_in)
    listed = await execute(client, "orch.machine.list", {})
    assert listed["default"] == "local" and listed["selected"] == "local"
    machines = {m["name"]: m for m in listed["machines"]}
    assert sorted(machines) == ["box", "cs", "local"]
    cs = machines["cs"]
    assert cs["state"] == "running", cs["detail"]
    assert (cs["kind"], cs["state"], cs["address"]) == ("codespaces", "running", name)
    assert cs["price_per_hour"] > 0 and cs["capabilities"]["has_cost"]
    assert cs["capabilities"]["can_terminate"]
    box = machines["box"]
    assert box["kind"] == "ssh" and box["state"] == "unknown"
    assert box["price_per_hour"] is None and not box["capabilities"]["has_cost"]
    assert machines["local"]["kind"] == "local"
    assert stand_in.TOKEN not in repr(listed)


async def test_a_machine_that_fails_is_listed_with_why(
    client: LanguageClient, stand_in: Any
) -> None:
    stand_in.fail_next = [(401, {})]  # the API refuses the token this once
    listed = await execute(client, "orch.machine.list", {})
    machines = {m["name"]: m for m in listed["machines"]}
    assert sorted(machines) == ["box", "cs", "local"]  # one broken machine hides no other
    assert machines["cs"]["state"] == "unknown"
    assert "GitHub rejected the token" in machines["cs"]["detail"]
    assert stand_in.TOKEN not in machines["cs"]["detail"]


async def test_select_switches_the_editors_machine_without_a_restart(
    client: LanguageClient,
) -> None:
    with pytest.raises(JsonRpcException, match="unknown machine 'nope'"):
        await execute(client, "orch.machine.select", {"machine": "nope"})
    picked = await execute(client, "orch.machine.select", {"machine": "cs"})
    assert picked["name"] == "cs" and picked["kind"] == "codespaces"
    await wait_for_status(client, lambda s: s["machine"]["name"] == "cs")
    status = await execute(client, "orch.status", {"fresh": True})
    assert status["machine"]["name"] == "cs" and status["machine"]["price_per_hour"] > 0
    # The machines orch.toml names ride in the status, so the editor sees when they change.
    assert status["config"]["machines"] == ["box", "cs", "local"]
    assert (await execute(client, "orch.machine.list", {}))["selected"] == "cs"
    # "" goes back to the project's default.
    await execute(client, "orch.machine.select", {"machine": ""})
    await wait_for_status(client, lambda s: s["machine"]["name"] == "local")


async def test_terminate_names_what_is_lost_then_deletes(
    client: LanguageClient, stand_in: Any
) -> None:
    stand_in.codespaces.clear()
    name = _codespace(stand_in, has_unpushed_changes=True, ahead=2, ref="feature")
    plan = await execute(client, "orch.machine.terminatePlan", {"machine": "cs"})
    assert plan["machine"] == "cs" and name in plan["plan"]
    assert any("unpushed commits on feature (2 ahead)" in w for w in plan["warnings"])
    assert name in stand_in.codespaces  # the plan changed nothing
    done = await execute(client, "orch.machine.terminate", {"machine": "cs"})
    assert done["state"] == "not-created"
    assert stand_in.codespaces == {}
    plan = await execute(client, "orch.machine.terminatePlan", {"machine": "cs"})
    assert plan["plan"] is None and plan["warnings"] == []
    with pytest.raises(JsonRpcException, match="cannot be deleted"):
        await execute(client, "orch.machine.terminatePlan", {"machine": "box"})
