"""The queue worker's scale-in protection, run for real: the worker script (the one a Fargate
task runs) as a local process against moto's SQS, with `ECS_AGENT_URI` pointing at a stand-in
for the ECS agent's task-protection endpoint on 127.0.0.1 (it answers as the agent documents:
`{"protection": {...}}` or `{"failure": {...}}`, and GET reports the current state).

Each item asks the stand-in for the task's protection while it runs, so the test sees what
scale-in would see at that moment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from remote_config import fargate_worker as fw
from tests.integration import fargate_world as world

pytestmark = pytest.mark.integration

PATH = "/api/task-1/task-protection/v1/state"
ASK = (
    "python3 -c 'import os, urllib.request as u; "
    'print(u.urlopen(os.environ["ECS_AGENT_URI"] + "/task-protection/v1/state").read().decode())\''
)


class Agent:
    """The stand-in agent endpoint: records every PUT body; `fail` answers with a failure."""

    def __init__(self, fail: str | None = None) -> None:
        self.puts: list[dict[str, Any]] = []
        self.enabled = False
        self.fail = fail
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _state(self) -> dict[str, Any]:
                arn = "arn:aws:ecs:us-east-1:123456789012:task/orch-proj/abc"
                return {"protection": {"ProtectionEnabled": agent.enabled, "TaskArn": arn}}

            def do_PUT(self) -> None:
                if self.path != PATH:  # the worker must append the path to ECS_AGENT_URI
                    self.send_error(404)
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                agent.puts.append(body)
                if agent.fail:
                    self._answer({"failure": {"Arn": "task", "Reason": agent.fail}})
                    return
                agent.enabled = bool(body["ProtectionEnabled"])
                self._answer(self._state())

            def do_GET(self) -> None:
                if self.path != PATH:
                    self.send_error(404)
                    return
                self._answer(self._state())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # Like the agent's own URI (http://169.254.170.2/api/<id>), it has a path.
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/api/task-1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def moto() -> Iterator[world.Moto]:
    pytest.importorskip("moto.server")
    m = world.start_moto()
    try:
        yield m
    finally:
        m.server.stop()


@pytest.fixture
def sqs(moto: world.Moto) -> Any:
    moto.reset()
    return world.clients(moto)["sqs"]


def _queue(sqs: Any, commands: list[str]) -> str:
    url = str(sqs.create_queue(QueueName="orch-proj-batch")["QueueUrl"])
    for i, cmd in enumerate(commands):
        sqs.send_message(QueueUrl=url, MessageBody=fw.message_body("q", i, cmd))
    return url


def _worker(moto: world.Moto, url: str, agent: Agent | None) -> subprocess.Popen[str]:
    env = {
        "PATH": os.environ["PATH"],
        **moto.env(),
        **fw.worker_environment("us-east-1", url, idle_s=0.3),
        "ORCH_HEARTBEAT_S": "0.2",
    }
    if agent:
        env["ECS_AGENT_URI"] = agent.uri
    return subprocess.Popen(
        ["sh", "-c", fw.WORKER_COMMAND],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"worker did not exit:\n{out}") from None
    return proc.returncode, out


def test_worker_is_protected_while_items_run_and_released_when_idle(
    moto: world.Moto, sqs: Any
) -> None:
    url = _queue(sqs, [ASK, ASK, ASK])
    agent = Agent()
    try:
        code, out = _finish(_worker(moto, url, agent))
    finally:
        agent.close()
    assert code == 0, out
    seen = [ln for ln in out.splitlines() if '"ProtectionEnabled"' in ln]
    assert len(seen) == 3 and all('"ProtectionEnabled": true' in ln for ln in seen), out
    # One protection for the run of items (not one per item), off once the queue was empty.
    assert agent.puts == [
        {"ProtectionEnabled": True, "ExpiresInMinutes": 60},
        {"ProtectionEnabled": False},
    ]
    assert agent.enabled is False
    assert out.count("] done") == 3


def test_a_refused_protection_is_reported_and_the_items_still_run(
    moto: world.Moto, sqs: Any
) -> None:
    url = _queue(sqs, ["echo one", "echo two"])
    agent = Agent(fail="TASK_NOT_VALID")
    try:
        code, out = _finish(_worker(moto, url, agent))
    finally:
        agent.close()
    assert code == 0, out
    assert "scale-in protection on failed: TASK_NOT_VALID" in out
    assert out.count("] done") == 2
    no_agent = _finish(_worker(moto, _queue(sqs, ["echo three"]), None))
    assert no_agent[0] == 0 and "no ECS_AGENT_URI, so no scale-in protection" in no_agent[1]


def test_sigterm_mid_item_puts_it_back_and_drops_the_protection(moto: world.Moto, sqs: Any) -> None:
    url = _queue(sqs, ["echo started; sleep 30"])
    agent = Agent()
    proc = _worker(moto, url, agent)
    try:
        deadline = time.monotonic() + 20
        while not agent.enabled:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.2)  # the item's shell is running
        proc.send_signal(signal.SIGTERM)
        code, out = _finish(proc, timeout=15)
    finally:
        agent.close()
    assert code == 143, out
    assert "goes back to the queue" in out
    assert agent.puts[-1] == {"ProtectionEnabled": False}
    # Visible again at once (not after the 300 s visibility timeout), for the next worker.
    got = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])
    (msg,) = got["Messages"]
    assert json.loads(msg["Body"])["command"] == "echo started; sleep 30"
    assert msg["Attributes"]["ApproximateReceiveCount"] == "2"
