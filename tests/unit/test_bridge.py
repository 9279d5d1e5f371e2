"""The window's bridge to the hosted language server (`sidecar.bridge`): what it reads of the
messages it pumps (for a replay after an agent dies), and that it and the agent's own start
stay light (tests/lsp/test_hosted.py runs it against the real agent)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from sidecar.bridge import Bridge, frame, read_message


def _bridge() -> Bridge:
    return Bridge(Path("/nonexistent"), io.BytesIO(), io.BytesIO())


def test_messages_are_read_whole_across_headers() -> None:
    body = json.dumps({"jsonrpc": "2.0", "method": "x", "params": {"t": "é\r\n"}}).encode()
    raw = b"Content-Type: application/vscode-jsonrpc\r\n" + frame(body) + frame(b"{}")
    stream = io.BytesIO(raw)
    assert read_message(stream) == body
    assert read_message(stream) == b"{}"
    assert read_message(stream) is None
    assert read_message(io.BytesIO(b"Content-Length: 10\r\n\r\n{}")) is None  # cut short


def test_the_bridge_keeps_what_a_replay_needs() -> None:
    bridge = _bridge()
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    uri = "file:///p/orch.toml"
    opened = {"uri": uri, "languageId": "toml", "version": 1, "text": "a"}
    change = {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": "b"}]}
    select = {"command": "orch.machine.select", "arguments": [{"machine": "gpu"}]}
    for message in (
        init,
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": opened}},
        {"jsonrpc": "2.0", "method": "textDocument/didChange", "params": change},
        {"jsonrpc": "2.0", "id": 2, "method": "workspace/executeCommand", "params": select},
        {"jsonrpc": "2.0", "id": 3, "method": "workspace/executeCommand", "params": select},
    ):
        bridge._keep(message, json.dumps(message).encode())
    assert bridge.initialize == init and bridge.initialized is not None
    assert bridge.documents[uri] == {**opened, "version": 2, "text": "b"}
    assert bridge.pending == {1: "initialize", 2: "workspace/executeCommand", 3: (
        "workspace/executeCommand")}  # fmt: skip
    # Answers: the first select failed, the second succeeded (that one is replayed).
    assert bridge._passes(json.dumps({"jsonrpc": "2.0", "id": 2, "error": {}}).encode())
    assert bridge._passes(json.dumps({"jsonrpc": "2.0", "id": 3, "result": {}}).encode())
    assert json.loads(bridge.kept["select"])["id"] == 3
    assert bridge.pending == {1: "initialize"}
    # A followed job's log is kept until it is unfollowed (or removed).
    for n, command in enumerate(("orch.jobs.follow", "orch.jobs.follow", "orch.jobs.unfollow")):
        params = {"command": command, "arguments": [{"name": f"job{min(n, 1)}", "tail": 50}]}
        message = {"jsonrpc": "2.0", "id": 10 + n, "method": "workspace/executeCommand"}
        bridge._keep(
            {**message, "params": params}, json.dumps({**message, "params": params}).encode()
        )
        bridge._passes(json.dumps({"jsonrpc": "2.0", "id": 10 + n, "result": {}}).encode())
    assert sorted(bridge.kept) == ["follow:job0", "select"]  # job1 was unfollowed
    # The answer to a replayed request is swallowed; a server's own request passes.
    bridge.swallow.add("orch-bridge-replay-1")
    replayed = {"jsonrpc": "2.0", "id": "orch-bridge-replay-1", "result": {}}
    assert not bridge._passes(json.dumps(replayed).encode())
    asked = {"jsonrpc": "2.0", "id": 7, "method": "window/workDoneProgress/create"}
    assert bridge._passes(json.dumps(asked).encode())
    closing = {"textDocument": {"uri": uri}}
    bridge._keep({"method": "textDocument/didClose", "params": closing}, b"")
    assert bridge.documents == {}


HEAVY = ("pydantic", "pygls", "lsprotocol", "cattrs", "asyncssh", "asyncio", "sidecar.server")


def _loaded(code: str) -> list[str]:
    """The HEAVY modules (or their submodules) loaded after `code`, in a fresh interpreter."""
    probe = (
        f"import sys\n{code}\n"
        f"heavy = {HEAVY!r}\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(heavy))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_bridge_imports_only_the_standard_library() -> None:
    assert _loaded("from sidecar import bridge; bridge.hosted()") == []


def test_the_agent_loads_the_language_server_only_for_a_window() -> None:
    loaded = _loaded("import sidecar.agent.server")
    assert not [m for m in loaded if m.startswith(("pygls", "lsprotocol", "cattrs", "sidecar."))]


def test_a_closed_windows_server_can_be_freed() -> None:
    """pygls caches message types in a global `lru_cache` keyed by the protocol: hosted in the
    agent, that kept the last ~20 windows' servers alive; OrchProtocol's own cache does not."""
    import gc
    import weakref

    from sidecar.server import build_server

    server = build_server()
    assert server.protocol.get_message_type("initialize") is not None
    gone = weakref.ref(server)
    del server
    gc.collect()
    assert gone() is None


def test_a_replay_sends_the_session_again_in_order() -> None:
    import socket

    bridge = _bridge()
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    follow = {"command": "orch.jobs.follow", "arguments": [{"name": "train", "tail": 100}]}
    select = {"command": "orch.machine.select", "arguments": [{"machine": "gpu"}]}
    bridge.initialize, bridge.initialized = init, b'{"method": "initialized"}'
    for key, params in (("follow:train", follow), ("select", select)):
        request = {"jsonrpc": "2.0", "id": 5, "method": "workspace/executeCommand"}
        bridge.kept[key] = json.dumps({**request, "params": params}).encode()
    bridge.documents["file:///p/orch.toml"] = {"uri": "file:///p/orch.toml", "text": "x"}
    ours, theirs = socket.socketpair()
    bridge.sock = ours
    bridge.restarts = [0.0]
    bridge._replay(init_pending=False)
    ours.close()
    stream = theirs.makefile("rb")
    sent = []
    while (body := read_message(stream)) is not None:
        sent.append(json.loads(body))
    theirs.close()
    assert [m["method"] for m in sent] == [
        "initialize", "initialized", "workspace/executeCommand", "workspace/executeCommand",
        "textDocument/didOpen",
    ]  # fmt: skip
    assert sent[0]["id"] != 1 and sent[0]["id"] in bridge.swallow  # its answer is dropped
    assert sent[2]["params"]["command"] == "orch.machine.select"  # the machine first
    assert sent[3]["params"]["arguments"] == [{"name": "train", "tail": 0}]  # no line twice
    assert {sent[2]["id"], sent[3]["id"]} <= bridge.swallow
