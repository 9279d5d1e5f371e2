"""A stateful stand-in for GitHub's Codespaces API, checked against GitHub's OpenAPI description.

A werkzeug app served on 127.0.0.1 in a thread. Every request is validated against the cut
description (spec.py) with openapi-core before the stand-in acts on it, and every response
before it is sent: a request the real API would reject is answered 422 and recorded in
`violations`, as is a response that breaks the schema, so tests fail on either (the fixture
asserts `violations == []`). Codespaces move one state per GET (Queued → Starting →
Available, ShuttingDown → Shutdown), like a slow real one seen by a poller. Tests script
failures with `fail_next` (status, headers) and the token's scopes with `scopes`.

Not in GitHub's description, so not validated: 429 responses (GitHub sends them on any path).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
from typing import Any

from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

NEXT_STATE = {"Queued": "Starting", "Starting": "Available", "ShuttingDown": "Shutdown"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _explain(error: Exception) -> str:
    """The violation with its schema errors (openapi-core keeps them on the cause)."""
    causes = [error, error.__cause__]
    details = [str(e) for c in causes if c is not None for e in getattr(c, "schema_errors", [])]
    return f"{error!r}: {'; '.join(details) or error.__cause__ or ''}"


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class Example:
    """A value satisfying a schema's required fields, for the parts of objects tests ignore."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            _, _, section, name = schema["$ref"].split("/", 3)
            schema = self.spec["components"][section][name]
        return schema

    def value(self, schema: dict[str, Any]) -> Any:
        schema = self.resolve(schema)
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                return self.value(schema[key][0])
        if schema.get("nullable"):
            return None
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type", "object")
        if kind == "object":
            props = schema.get("properties", {})
            return {k: self.value(props.get(k, {})) for k in schema.get("required", [])}
        strings = {
            "date-time": "2026-01-01T00:00:00Z",
            "date": "2026-01-01",
            "uri": "https://example.invalid/x",
            "email": "octocat@example.invalid",
        }
        return {
            "array": [],
            "integer": 1,
            "number": 1.0,
            "boolean": False,
            "string": strings.get(schema.get("format", ""), "x"),
        }[kind]


class FakeCodespacesAPI:
    TOKEN = "ghp_fake-test-token-0123456789"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = json.loads(json.dumps(spec))
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self.spec["servers"] = [{"url": self.url}]
        self.openapi = OpenAPI.from_dict(self.spec)
        self.example = Example(self.spec)
        self.lock = threading.Lock()
        self.codespaces: dict[str, dict[str, Any]] = {}
        self.violations: list[str] = []
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []
        self.fail_next: list[tuple[int, dict[str, str]]] = []
        self.scopes: str | None = "codespace, repo, read:org"
        self.machine = {"name": "standardLinux32gb", "display_name": "4 cores, 16 GB RAM",
                        "operating_system": "linux", "storage_in_bytes": 34359738368,
                        "memory_in_bytes": 17179869184, "cpus": 4,
                        "prebuild_availability": "none"}  # fmt: skip
        self._ids = itertools.count(1000)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    # --- the WSGI side: validate, act, validate -------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        before = len(self.violations)
        response = self._handle(request)
        if response.status_code != 429 and len(self.violations) == before:
            result = self.openapi.unmarshal_response(
                WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response)
            )
            if result.errors:
                self.violations.append(
                    f"response {request.method} {request.path} {response.status_code}: "
                    + "; ".join(_explain(e) for e in result.errors)
                )
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        body = request.get_json(silent=True) if request.data else None
        with self.lock:
            self.requests.append((request.method, request.path, body))
        result = self.openapi.unmarshal_request(WerkzeugOpenAPIRequest(request))
        if result.errors:
            self.violations.append(
                f"request {request.method} {request.path}: "
                + "; ".join(_explain(e) for e in result.errors)
            )
            return self._error(422, "Invalid request (rejected by the OpenAPI description)")
        if request.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            return self._error(401, "Bad credentials")
        with self.lock:
            if self.fail_next:
                status, headers = self.fail_next.pop(0)
                resp = self._error(status, "API rate limit exceeded for user ID 1.")
                resp.headers.update(headers)
                return resp
            return self._route(request, body or {})

    def _error(self, status: int, message: str) -> Response:
        doc = "https://docs.github.com/rest"
        return self._json({"message": message, "documentation_url": doc}, status)

    def _json(self, value: Any, status: int = 200) -> Response:
        return Response(json.dumps(value), status=status, content_type="application/json")

    def _route(self, request: Request, body: dict[str, Any]) -> Response:
        parts = request.path.strip("/").split("/")
        method = request.method
        if parts == ["user"]:
            user = self.example.value({"$ref": "#/components/schemas/private-user"})
            resp = self._json({**user, "login": "octocat", "user_view_type": "private"})
            if self.scopes is not None:
                resp.headers["X-OAuth-Scopes"] = self.scopes
            return resp
        if parts[0] == "repos" and parts[3:] == ["codespaces", "machines"]:
            return self._json({"total_count": 1, "machines": [self.machine]})
        if parts[0] == "repos" and parts[3:] == ["codespaces"]:
            repo = f"{parts[1]}/{parts[2]}"
            if method == "POST":
                return self._json(self._create(repo, body), 201)
            found = [c for c in self.codespaces.values() if c["repository"]["full_name"] == repo]
            return self._json({"total_count": len(found), "codespaces": found})
        if parts[:2] == ["user", "codespaces"] and len(parts) >= 3:
            cs = self.codespaces.get(parts[2])
            if cs is None:
                return self._error(404, "Not Found")
            return self._act(cs, method, parts[3:])
        return self._error(404, "Not Found")

    def _act(self, cs: dict[str, Any], method: str, rest: list[str]) -> Response:
        if method == "DELETE":
            del self.codespaces[cs["name"]]
            return self._json({}, 202)
        if rest == ["start"]:
            if cs["state"] == "Shutdown":
                cs["state"] = "Starting"
            return self._json(cs)
        if rest == ["stop"]:
            if cs["state"] != "Shutdown":
                cs["state"] = "ShuttingDown"
            return self._json(cs)
        shown = json.loads(json.dumps(cs))
        cs["state"] = NEXT_STATE.get(cs["state"], cs["state"])
        return self._json(shown)

    def _create(self, repo: str, body: dict[str, Any]) -> dict[str, Any]:
        cs = self.example.value({"$ref": "#/components/schemas/codespace"})
        n = next(self._ids)
        name = f"{repo.split('/')[1]}-{n}-x9q"
        repository = cs["repository"]
        repository.update(full_name=repo, name=repo.split("/")[1])
        cs.update(
            id=n, name=name, display_name=body.get("display_name", name), state="Queued",
            machine=dict(self.machine), created_at=_now(), updated_at=_now(),
            last_used_at=_now(), idle_timeout_minutes=body.get("idle_timeout_minutes", 30),
            retention_period_minutes=body.get("retention_period_minutes"),
            git_status={"ahead": 0, "behind": 0, "has_unpushed_changes": False,
                        "has_uncommitted_changes": False, "ref": body.get("ref", "main")},
            location="WestUs2", web_url=f"https://{name}.github.dev",
        )  # fmt: skip
        self.codespaces[name] = cs
        return cs
