"""A small Debug Adapter Protocol client (asyncio): enough to attach to debugpy, set
breakpoints, and read the stack and variables. Used by tests and `bench/debug.py`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

INITIALIZE = {
    "clientID": "orch",
    "adapterID": "debugpy",
    "pathFormat": "path",
    "linesStartAt1": True,
    "columnsStartAt1": True,
}


class DAPClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._seq = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.initialized = False
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float = 10.0) -> DAPClient:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        return cls(reader, writer)

    async def _read_loop(self) -> None:
        try:
            while True:
                length = 0
                while True:
                    line = await self.reader.readline()
                    if not line:
                        raise ConnectionError("debug adapter closed the connection")
                    line = line.strip()
                    if not line:
                        break
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                message = json.loads(await self.reader.readexactly(length))
                if message.get("type") == "response":
                    future = self._pending.pop(message["request_seq"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("type") == "event":
                    await self.events.put(message)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(str(exc)))

    def send(self, command: str, arguments: dict[str, Any] | None = None) -> asyncio.Future[Any]:
        self._seq += 1
        message = {
            "seq": self._seq,
            "type": "request",
            "command": command,
            "arguments": arguments or {},
        }
        body = json.dumps(message).encode()
        self.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._seq] = future
        return future

    async def request(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 15.0
    ) -> dict[str, Any]:
        response = await asyncio.wait_for(self.send(command, arguments), timeout)
        if not response.get("success"):
            raise RuntimeError(f"{command} failed: {response.get('message')}")
        if command == "initialize":
            self.initialized = True
        return dict(response.get("body") or {})

    async def wait_event(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                event = await self.events.get()
                if event.get("event") == name:
                    return event

        return await asyncio.wait_for(find(), timeout)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def attach_and_break(
    client: DAPClient, config: dict[str, Any], source: str, line: int
) -> dict[str, Any]:
    """Run debugpy's attach handshake with a breakpoint at `source:line`; return the stop.

    The result has the top frame (`frame`), its `variables` (name → value string) and the
    `stopped` event.
    """
    if not client.initialized:
        await client.request("initialize", INITIALIZE)
    attach = client.send(
        "attach", {k: v for k, v in config.items() if k not in {"type", "request", "name"}}
    )
    await client.wait_event("initialized")
    await client.request(
        "setBreakpoints", {"source": {"path": source}, "breakpoints": [{"line": line}]}
    )
    await client.request("configurationDone")
    await asyncio.wait_for(attach, 15)
    stopped = await client.wait_event("stopped", timeout=30)
    thread = stopped["body"]["threadId"]
    frames = (await client.request("stackTrace", {"threadId": thread}))["stackFrames"]
    frame = frames[0]
    scopes = (await client.request("scopes", {"frameId": frame["id"]}))["scopes"]
    ref = scopes[0]["variablesReference"]
    variables = (await client.request("variables", {"variablesReference": ref}))["variables"]
    return {
        "stopped": stopped,
        "frame": frame,
        "variables": {v["name"]: v["value"] for v in variables},
    }
