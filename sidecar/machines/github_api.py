"""A small client for GitHub's Codespaces REST API (the endpoints orch's provider needs).

It owns authentication (a token from GITHUB_TOKEN / GH_TOKEN or `gh auth token`, checked up
front for the `codespace` scope), rate limits (403/429 with Retry-After or
X-RateLimit-Reset, waited out within a bound) and turning HTTP failures into orch errors
that say what to do. The token is kept in one attribute and never appears in a message,
a log line or a repr. httpx is imported lazily (`pip install 'orch[codespaces]'`).

The base URL comes from ORCH_GITHUB_API_URL (GitHub Enterprise, tests) or api.github.com.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sidecar.errors import AuthenticationFailed, NotFound, OrchError, UsageError

if TYPE_CHECKING:
    import httpx

API_VERSION = "2022-11-28"
DEFAULT_URL = "https://api.github.com"
MAX_RATE_WAIT_S = 60.0  # longest single wait for a rate limit before giving up
MAX_RETRIES = 3
GH_INSTALL_HINT = "install the GitHub CLI: https://cli.github.com (Debian/Ubuntu: apt install gh)"


class GitHubError(OrchError):
    """A GitHub API call failed; `status` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, hint: str | None = None, *, status: int = 0) -> None:
        super().__init__(message, hint)
        self.status = status


class RateLimited(GitHubError):
    pass


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError:
        raise UsageError(
            "codespaces machines need the httpx package",
            hint="pip install 'orch[codespaces]' (or pip install httpx)",
        ) from None
    return httpx


def find_token(env: dict[str, str] | None = None) -> str:
    """The GitHub token: GITHUB_TOKEN, GH_TOKEN, else `gh auth token`."""
    env = dict(os.environ) if env is None else env
    for name in ("GITHUB_TOKEN", "GH_TOKEN"):
        if env.get(name, "").strip():
            return env[name].strip()
    gh = shutil.which("gh", path=env.get("PATH"))
    if gh:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            done = subprocess.run(
                [gh, "auth", "token"], capture_output=True, text=True, timeout=15, env=env
            )
            if done.returncode == 0 and done.stdout.strip():
                return done.stdout.strip()
    raise AuthenticationFailed(
        "no GitHub token: GITHUB_TOKEN and GH_TOKEN are unset and `gh auth token` gave none",
        hint="run `gh auth login -s codespace`, or export GITHUB_TOKEN with the codespace scope",
    )


def retry_after_s(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from Retry-After (seconds or HTTP date) or X-RateLimit-Reset."""
    now = time.time() if now is None else now
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            return max(0.0, parsed.timestamp() - now)
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        with contextlib.suppress(ValueError):
            return max(0.0, float(headers["x-ratelimit-reset"]) - now)
    return None


def _is_rate_limit(status: int, headers: Any, body: str) -> bool:
    if status == 429:
        return True
    return status == 403 and (
        "retry-after" in headers
        or headers.get("x-ratelimit-remaining") == "0"
        or "rate limit" in body.lower()
    )


class GitHubClient:
    """Async client for the codespaces endpoints; one per process, closed with `aclose`."""

    def __init__(
        self,
        token: str | None = None,
        base_url: str | None = None,
        *,
        transport: Any = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_rate_wait_s: float = MAX_RATE_WAIT_S,
    ) -> None:
        self._token = token
        self.base_url = (base_url or os.environ.get("ORCH_GITHUB_API_URL") or DEFAULT_URL).rstrip(
            "/"
        )
        self._transport = transport
        self._sleep = sleep
        self.max_rate_wait_s = max_rate_wait_s
        self._http: httpx.AsyncClient | None = None
        self._scopes_checked = False

    def __repr__(self) -> str:  # never show the token
        return f"GitHubClient({self.base_url!r})"

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            httpx = _import_httpx()
            if self._token is None:
                self._token = find_token()
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                headers={
                    "Accept": "application/vnd.github+json",
                    "Authorization": f"Bearer {self._token}",
                    "X-GitHub-Api-Version": API_VERSION,
                    "User-Agent": "orch",
                },
                timeout=30.0,
                transport=self._transport,
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call, with rate limits waited out; returns the decoded JSON (or None)."""
        httpx = _import_httpx()
        if not self._scopes_checked:
            await self.check_scopes()
        for attempt in range(MAX_RETRIES + 1):
            try:
                resp = await self._client().request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise GitHubError(
                    f"cannot reach the GitHub API at {self.base_url}: {type(exc).__name__}",
                    hint="check your network connection (and ORCH_GITHUB_API_URL if set)",
                ) from None
            if _is_rate_limit(resp.status_code, resp.headers, resp.text):
                wait = retry_after_s(resp.headers)
                wait = 60.0 if wait is None else wait
                if attempt == MAX_RETRIES or wait > self.max_rate_wait_s:
                    raise RateLimited(
                        f"GitHub's rate limit was hit ({method} {path}); retry in {wait:.0f} s",
                        hint="wait and run the command again",
                        status=resp.status_code,
                    )
                await self._sleep(wait)
                continue
            return self._result(method, path, resp)
        raise AssertionError("unreachable")  # pragma: no cover

    def _result(self, method: str, path: str, resp: httpx.Response) -> Any:
        status = resp.status_code
        if status < 300:
            return resp.json() if resp.content else None
        try:
            detail = str(resp.json().get("message", ""))
        except ValueError:
            detail = resp.text[:200]
        what = f"{method} {path}"
        if status == 401:
            raise AuthenticationFailed(
                f"GitHub rejected the token ({what}): {detail}",
                hint="run `gh auth login -s codespace` or set a valid GITHUB_TOKEN",
            )
        if status == 404:
            raise NotFound(
                f"GitHub says not found ({what})",
                hint="check the repository name, and that your token can see it",
            )
        raise GitHubError(f"GitHub API error {status} ({what}): {detail}", status=status)

    async def check_scopes(self) -> None:
        """Fail early, with the fix, when a classic token lacks the `codespace` scope."""
        self._scopes_checked = True
        httpx = _import_httpx()
        try:
            resp = await self._client().get("/user")
        except httpx.HTTPError as exc:
            self._scopes_checked = False
            raise GitHubError(
                f"cannot reach the GitHub API at {self.base_url}: {type(exc).__name__}",
                hint="check your network connection (and ORCH_GITHUB_API_URL if set)",
            ) from None
        if resp.status_code == 401:
            raise AuthenticationFailed(
                "GitHub rejected the token (401 Bad credentials)",
                hint="run `gh auth login -s codespace` or set a valid GITHUB_TOKEN",
            )
        header = resp.headers.get("x-oauth-scopes")
        if header is None:
            return  # fine-grained or app tokens carry no scopes header: permissions decide
        scopes = {s.strip() for s in header.split(",") if s.strip()}
        if "codespace" not in scopes:
            shown = ", ".join(sorted(scopes)) or "none"
            raise AuthenticationFailed(
                f"the GitHub token lacks the 'codespace' scope (it has: {shown})",
                hint="run `gh auth refresh -h github.com -s codespace` "
                "(or create a token with the codespace scope)",
            )

    # --- the endpoints ---------------------------------------------------------------------

    async def list_for_repo(self, repository: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            data = await self.request(
                "GET",
                f"/repos/{repository}/codespaces",
                params={"per_page": 100, "page": page},
            )
            out.extend(data.get("codespaces", []))
            if len(out) >= int(data.get("total_count", 0)) or not data.get("codespaces"):
                return out
            page += 1

    async def create(self, repository: str, **fields: Any) -> dict[str, Any]:
        body = {k: v for k, v in fields.items() if v is not None}
        data: dict[str, Any] = await self.request(
            "POST", f"/repos/{repository}/codespaces", json=body
        )
        return data

    async def get(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.request("GET", f"/user/codespaces/{name}")
        return data

    async def start(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.request("POST", f"/user/codespaces/{name}/start")
        return data

    async def stop(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.request("POST", f"/user/codespaces/{name}/stop")
        return data

    async def delete(self, name: str) -> None:
        await self.request("DELETE", f"/user/codespaces/{name}")

    async def machines(self, repository: str, ref: str | None = None) -> list[dict[str, Any]]:
        params = {"ref": ref} if ref else None
        data = await self.request("GET", f"/repos/{repository}/codespaces/machines", params=params)
        machines: list[dict[str, Any]] = data.get("machines", [])
        return machines
