"""`orch debug` with real debugpy: a breakpoint set by its LOCAL path stops the remote job at
the mapped file and line, with variables readable — on the local machine and on real sshd."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from remote_config import job_scripts as js
from sidecar.app import Orchestrator
from sidecar.debug.dap import INITIALIZE, DAPClient, attach_and_break
from sidecar.errors import DebuggerNotReady, OrchError
from tests.helpers import clean_remote, job_names, own_remote_dir, sync_toml

pytestmark = pytest.mark.integration

SCRIPT = """\
def work(n):
    total = 0
    for i in range(n):
        total += i * 2
    return total


print("result", work(5))
"""
BREAK_LINE = 4


@pytest.fixture(params=["local", "sshd", "proxied"])
async def orch(
    request: pytest.FixtureRequest, orch_home: Path, project: Path
) -> AsyncIterator[Orchestrator]:
    (project / "pkg").mkdir()
    (project / "pkg" / "script.py").write_text(SCRIPT)
    toml = '[debug]\npython = "python3"\n'
    if request.param in ("sshd", "proxied"):
        # "proxied": the sshd reached only through a ProxyCommand (see test_proxy_reach.py)
        sshd = request.getfixturevalue("sshd")
        remote_dir = own_remote_dir()
        log = orch_home / "proxy.log" if request.param == "proxied" else None
        toml = (
            '[project]\ndefault_machine = "box"\n'
            + toml
            + sync_toml(remote_dir)
            + sshd.machine_toml(proxy_log=log)
        )
    (project / "orch.toml").write_text(toml)
    o = Orchestrator(cwd=project)
    await o.up()
    before = await job_names(o)
    await o.sync_now()
    try:
        yield o
    finally:
        for port in (await o.ports_list()).ports:
            if port.state == "active":
                await o.ports_remove(port.local_port)
        if request.param == "local":  # its own home: kill every job and orch's tmux server
            target = await o.ssh_target()
            await o.pool.run(target, "sh -s", input=js.reset_script(), timeout=30)
        else:  # the shared sshd user: only this test's jobs and folder
            await clean_remote(o, before, [remote_dir, f"~/.orch/snapshots/{project.name}"])
        await o.close()
        if request.param == "local":
            await o.down()


async def _connect(port: int) -> DAPClient:
    """Connect through the forward at once: `debug_start` returns only when debugpy listens,
    so the first connection must be served (no retry here, on purpose)."""
    client = await DAPClient.connect("127.0.0.1", port)
    try:
        await client.request("initialize", INITIALIZE, timeout=10)
    except BaseException:
        await client.close()
        raise
    return client


async def _wait_done(orch: Orchestrator, name: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = {j.name: j for j in await orch.jobs_status()}[name]
        if job.state != "running":
            assert job.state == "succeeded", job
            return await orch.jobs_logs(name)
        await asyncio.sleep(0.1)
    raise AssertionError("the debugged job did not finish")


async def test_breakpoint_by_local_path_hits_the_remote_job(
    orch: Orchestrator, project: Path
) -> None:
    said: list[str] = []
    session = await orch.debug_start("dbg", ["python3", "pkg/script.py"], say=said.append)
    config = session.configuration
    assert config["type"] == "debugpy" and config["request"] == "attach"
    assert config["connect"] == {"host": "127.0.0.1", "port": session.local_port}
    assert config["pathMappings"][0]["localRoot"] == str(project)
    assert config["justMyCode"] is False
    # Shipped without touching the remote interpreter, after saying so.
    copying = [m for m in said if "debugpy is not installed" in m]
    assert not copying or "copying debugpy" in copying[0]
    assert any("waiting for debugpy to listen" in m for m in said)

    local_file = str(project / "pkg" / "script.py")
    client = await _connect(session.local_port)
    try:
        stop = await attach_and_break(client, config, local_file, BREAK_LINE)
        assert stop["frame"]["source"]["path"] == local_file
        assert stop["frame"]["line"] == BREAK_LINE
        assert stop["variables"]["n"] == "5"
        assert stop["variables"]["total"] == "0"
        await client.request("continue", {"threadId": stop["stopped"]["body"]["threadId"]})
        await client.request("setBreakpoints", {"source": {"path": local_file}, "breakpoints": []})
        await client.request("continue", {"threadId": stop["stopped"]["body"]["threadId"]})
    finally:
        await client.close()
    assert "result 20" in await _wait_done(orch, "dbg")
    # The job ended: its debug forward goes with it (issue 14: it stayed "active").
    forwarded = [p["local_port"] for p in (await orch.status()).ports]
    assert session.local_port not in forwarded


async def test_an_attach_right_after_start_hits_the_breakpoint_every_time(
    orch: Orchestrator, project: Path
) -> None:
    # The race of issue 14: a client attaching the moment `orch debug` returns was turned
    # away (the forward closed it) while debugpy was still starting.
    local_file = str(project / "pkg" / "script.py")
    for attempt in range(3):
        session = await orch.debug_start(
            "race", ["python3", "pkg/script.py"], replace=True, snapshot=False
        )
        client = await _connect(session.local_port)
        try:
            stop = await attach_and_break(client, session.configuration, local_file, BREAK_LINE)
            assert stop["frame"]["line"] == BREAK_LINE, attempt
            thread = stop["stopped"]["body"]["threadId"]
            await client.request("setBreakpoints", {"source": {"path": local_file}})
            await client.request("continue", {"threadId": thread})
        finally:
            await client.close()
        assert "result 20" in await _wait_done(orch, "race")


async def test_a_debug_job_that_dies_before_listening_says_so(orch: Orchestrator) -> None:
    with pytest.raises(DebuggerNotReady, match=r"'early' failed with exit code 127"):
        await orch.debug_start("early", ["python3.99", "pkg/script.py"], snapshot=False)


async def test_attach_and_launch_json_for_a_running_debug_job(
    orch: Orchestrator, project: Path
) -> None:
    session = await orch.debug_start("waits", ["python3", "pkg/script.py"])
    again = await orch.debug_attach("waits")
    assert again.local_port == session.local_port
    assert again.remote_port == session.remote_port

    vscode = project / ".vscode"
    vscode.mkdir()
    user = (
        '{\n  // mine\n  "configurations": [\n    {"name": "Mine", "type": "debugpy"},\n  ],\n}\n'
    )
    (vscode / "launch.json").write_text(user)
    result = await orch.debug_config("waits")
    text = (vscode / "launch.json").read_text()
    assert '{"name": "Mine", "type": "debugpy"},' in text and "// mine" in text
    assert result.configuration["name"] == "Orch: attach waits"
    assert f'"port": {session.local_port}' in text

    with pytest.raises(OrchError, match="not started under debugpy"):
        await orch.jobs_run("plain", "sleep 30")
        await orch.debug_attach("plain")


def test_cli_debug_usage_errors(orch_home: Path, project: Path) -> None:
    from tests.helpers import run_orch

    result = run_orch("debug", cwd=project)
    assert result.returncode == 2 and "needs a job name" in result.stderr
    result = run_orch("debug", "x", "--bogus", "--", "python3", "a.py", cwd=project)
    assert result.returncode == 2 and "unknown option '--bogus'" in result.stderr
    assert json.dumps  # the module is used by the CLI JSON paths
