"""A stand-in for the EC2 instance metadata service (IMDSv2) on 127.0.0.1, as the docs
describe it: a session token from `PUT /latest/api/token` (with the TTL header), required on
every GET (401 without it); `/latest/meta-data/spot/instance-action` answers 404 until AWS
schedules a spot interruption, then `{"action": ..., "time": ...}`;
`/latest/meta-data/iam/security-credentials/` names the instance role and
`…/security-credentials/ROLE` gives its temporary credentials.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Imds:
    def __init__(self) -> None:
        self.token = secrets.token_hex(8)
        self.notice: dict[str, str] | None = None
        self.requests: list[tuple[str, str]] = []
        self.url = ""
        self.role = "orch-proj-big"
        self.credentials = {
            "Code": "Success",
            "AccessKeyId": "ASIATESTROLEKEY",
            "SecretAccessKey": "role-secret",
            "Token": "role-session-token",
            "Expiration": "2099-01-01T00:00:00Z",
        }


@contextmanager
def imds() -> Iterator[Imds]:
    state = Imds()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, code: int, body: str = "") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            state.requests.append(("PUT", self.path))
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            if self.path != "/latest/api/token" or not ttl or not 1 <= int(ttl) <= 21600:
                self._answer(400)
                return
            self._answer(200, state.token)

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path))
            if self.headers.get("X-aws-ec2-metadata-token") != state.token:
                self._answer(401)
            elif self.path == "/latest/meta-data/spot/instance-action" and state.notice:
                self._answer(200, json.dumps(state.notice))
            elif self.path == "/latest/meta-data/iam/security-credentials/":
                self._answer(200, state.role)
            elif self.path == f"/latest/meta-data/iam/security-credentials/{state.role}":
                self._answer(200, json.dumps(state.credentials))
            else:
                self._answer(404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
