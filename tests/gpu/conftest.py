"""Shared fixtures for the GPU-service tests: one small engine and a real HTTP server.

Everything runs at 256 px with random weights (explicitly requested), BiRefNet on PVT-v2-b0
and SAM2 hiera-tiny, so the whole directory stays within a few minutes on a 2-core CPU. The
server is uvicorn on a socket bound to 127.0.0.1:0 (a free port), in a thread of this process.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any

import pytest

try:
    import torch  # noqa: F401
except ImportError:  # the gpu extra is absent (e.g. the sidecar's own venv): nothing to run here;
    # scripts/test_gpu.sh builds the environment where these tests do run (and must pass).
    collect_ignore_glob = ["test_gpu_*.py"]

SIZE = 256
SLOW_MS = 50.0


@pytest.fixture(scope="session")
def engine() -> Any:
    from gpu.engine import Engine, EngineConfig

    eng = Engine(
        EngineConfig(
            lanes=2,
            birefnet_backbone="pvt_v2_b0",
            birefnet_size=SIZE,
            sam2_size=SIZE,
            random_weights=True,
        )
    )
    yield eng
    eng.close()


class Client:
    """A tiny HTTP client for the service under test (stdlib only)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> tuple[int, Any]:
        status, _, body = self.request("GET", path)
        return status, json.loads(body)

    def post_json(self, path: str, payload: Any) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        status, _, raw = self.request("POST", path, body, {"Content-Type": "application/json"})
        return status, json.loads(raw)


@pytest.fixture(scope="session")
def server(engine: Any) -> Any:
    import uvicorn

    from gpu.imaging import Limits
    from gpu.service import create_app

    limits = Limits(max_body_bytes=2 * 1024 * 1024, max_pixels=1024 * 1024, max_batch=4)
    # A low slow-request threshold: model requests (hundreds of ms on a CPU) are all "slow".
    app = create_app(engine, limits, slow_ms=SLOW_MS)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield Client(port)
    srv.should_exit = True
    thread.join(timeout=15)
    sock.close()


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
