"""A local client that connects to a forwarded port in the very moment the forward is
removed is closed, not stranded: Python 3.11's `Server.close()` between the loop accepting
a connection and setting it up leaks the accepted socket (its client waits until a garbage
collection, often never). The close is put in exactly that gap, on the local machine."""

from __future__ import annotations

import asyncio
import gc
import socket
from pathlib import Path

import pytest

from remote_config.ssh_config import LocalForwardSpec
from sidecar.app import Orchestrator
from sidecar.ssh.forwards import ForwardSet
from tests.helpers import free_port

pytestmark = pytest.mark.integration


async def test_a_client_caught_as_its_forward_is_removed_is_closed(
    project: Path, orch_home: Path
) -> None:
    orch = Orchestrator(cwd=project)
    await orch.up()
    forwards = ForwardSet(orch.pool, await orch.ssh_target(), lambda: None)
    local_port = free_port()
    gc.disable()  # a collection would close the leaked socket and hide the bug
    try:
        assert await forwards.add(LocalForwardSpec(local_port, "127.0.0.1", free_port()))
        client = socket.create_connection(("127.0.0.1", local_port), timeout=5)
        client.setblocking(False)
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # accepted; its set-up is queued behind this task
        assert await forwards.remove(local_port)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(3):
            assert await loop.sock_recv(client, 100) == b""  # closed: the forward is gone
        client.close()
    finally:
        gc.enable()
        await forwards.close()
        await orch.down()
        await orch.close()
