"""An owner (the port forwarder, the agent) that stops while a client is connecting answers
that client: the client is never left waiting on a socket nobody reads.

Python 3.11's `Server.close()` can land between the loop accepting a connection and setting
up its transport; the set-up then fails silently and the accepted socket leaks until the
garbage collector finds it. The tests put the close in exactly that gap: the client
connects, the loop turns twice (it accepts, and the set-up is queued behind this task), and
the owner stops."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
from pathlib import Path

from sidecar.layout import Layout
from sidecar.machines.base import SSHTarget
from sidecar.ssh.forwarder import ForwardOwner
from sidecar.ssh.pool import ConnectionPool
from sidecar.state import serve_as_owner, stop_serving


def _connect(path: Path, payload: bytes) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    client.sendall(payload)
    client.setblocking(False)
    return client


async def _answer(client: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(3):  # the bug: no answer and no end until a gc, often never
        while chunk := await loop.sock_recv(client, 4096):
            data += chunk
    return data


async def test_stop_serving_lets_a_client_caught_mid_accept_get_its_answer(tmp_path: Path) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"stopping\n")
        await writer.drain()
        writer.close()

    gc.disable()  # a collection would close the leaked socket and hide the bug
    try:
        owned = await serve_as_owner(tmp_path / "lock", tmp_path / "sock", handler)
        assert owned is not None
        _fd, server = owned
        client = _connect(tmp_path / "sock", b"hello\n")
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # accepted; its transport is set up after this task's turn
        await stop_serving(server, tmp_path / "sock")
        assert await _answer(client) == b"stopping\n"
        assert not (tmp_path / "sock").exists()
        client.close()
    finally:
        gc.enable()


async def test_a_forwarder_stopping_answers_a_request_that_arrives_as_it_stops(
    tmp_path: Path,
) -> None:
    target = SSHTarget(
        alias="orch-test",
        host="127.0.0.1",
        port=1,
        user="nobody",
        identity_file=str(tmp_path / "key"),
        host_key_alias="orch-test",
        known_hosts_file=str(tmp_path / "known_hosts"),
    )
    owner = ForwardOwner(Layout(tmp_path / "home"), ConnectionPool(), target, "test")
    gc.disable()
    try:
        assert await owner.start()
        request = json.dumps({"op": "remove", "local_port": 5000}).encode() + b"\n"
        client = _connect(owner.paths.socket, request)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await owner.stop()
        reply = json.loads(await _answer(client))
        assert reply["ok"] is False and "stopping" in reply["message"]
        client.close()
    finally:
        gc.enable()
