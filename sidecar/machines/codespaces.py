"""A GitHub codespace as an orch machine (`kind = "codespaces"`).

`up` finds the project's codespace (its repository plus orch's display name) or creates it,
starts it when it is shut down, and waits for `Available`. orch reaches it the way `gh`
does, through GitHub's relay: the managed ssh entry's ProxyCommand is
`gh codespace ssh -c NAME --stdio -- -i KEY` (gh passes KEY's public half to the codespace's
sshd). The host key is pinned before first use through the same authenticated channel
(`gh codespace ssh -c NAME -- cat /etc/ssh/ssh_host_ed25519_key.pub`), never trusted from
the network. `down` stops; `terminate` deletes (after the CLI's confirmation, which lists
the unpushed work the API reports). Cost is GitHub's price per core count times the time
since orch saw the codespace start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shlex
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from remote_config.model import CodespacesMachine
from sidecar.errors import HostKeyMismatch, MachineNotRunning, NotFound, OrchError, UsageError
from sidecar.layout import Layout
from sidecar.machines import codespaces_cost, codespaces_idle  # noqa: F401 (registers the idle stop hook)
from sidecar.machines.base import (
    Capabilities,
    MachineInfo,
    MachineState,
    Progress,
    Provider,
    SSHTarget,
)
from sidecar.machines.github_api import GH_INSTALL_HINT, GitHubClient
from sidecar.ssh import keys
from sidecar.state import read_json, write_json

STATES: dict[str, MachineState] = {
    "Available": "running",
    "Created": "starting",
    "Queued": "starting",
    "Provisioning": "starting",
    "Awaiting": "starting",
    "Starting": "starting",
    "Rebuilding": "starting",
    "Updating": "starting",
    "Exporting": "starting",
    "ShuttingDown": "stopping",
    "Shutdown": "stopped",
    "Archived": "stopped",
    "Deleted": "not-created",
}
FAILED = {"Failed", "Unavailable", "Unknown", "Moved"}
HOST_KEY_FILE = "/etc/ssh/ssh_host_ed25519_key.pub"


def find_gh() -> str:
    gh = shutil.which("gh")
    if gh is None:
        raise UsageError(
            "codespaces are reached through the GitHub CLI `gh`, which is not on PATH",
            hint=GH_INSTALL_HINT,
        )
    return gh


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class CodespacesProvider(Provider):
    kind = "codespaces"
    capabilities = Capabilities(
        creates=True,
        can_stop=True,
        can_terminate=True,
        has_cost=True,
        has_idle_stop=True,
        reach=["proxy_command"],
    )
    poll_interval_s: ClassVar[float] = 3.0
    start_timeout_s: ClassVar[float] = 900.0

    def __init__(
        self,
        name: str,
        spec: CodespacesMachine,
        layout: Layout,
        project: str,
        client: GitHubClient | None = None,
    ) -> None:
        super().__init__(name, spec, layout, project)
        self.spec: CodespacesMachine = spec
        self.client = client or GitHubClient()
        self._calls = 0  # Provider calls in flight (see `_session`)

    # --- what orch remembers about the codespace (no secrets) ------------------------------

    @property
    def display_name(self) -> str:
        return self.spec.display_name or f"orch {self.project} {self.name}"[:48]

    def _record(self) -> dict[str, Any]:
        data = read_json(self.state_dir / "codespace.json")
        return data if isinstance(data, dict) else {}

    def _save(self, **changes: Any) -> dict[str, Any]:
        record = {**self._record(), **changes}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.state_dir / "codespace.json", record)
        return record

    # --- finding, creating, waiting ----------------------------------------------------------

    async def find(self) -> dict[str, Any] | None:
        """The project's codespace: the one orch recorded, else by repository + display name."""
        name = self._record().get("name")
        if name:
            try:
                return await self.client.get(name)
            except NotFound:
                self._save(name=None, user=None, pinned_for=None, started_at=None)
        for cs in await self.client.list_for_repo(self.spec.repository):
            if cs.get("display_name") == self.display_name and (
                (cs.get("repository") or {}).get("full_name", "").lower()
                == self.spec.repository.lower()
            ):
                self._save(name=cs["name"])
                return cs
        return None

    async def _create(self, progress: Progress | None) -> dict[str, Any]:
        if progress:
            progress(f"creating a codespace of {self.spec.repository} ({self.spec.machine_type})")
        cs = await self.client.create(
            self.spec.repository,
            ref=self.spec.branch,
            machine=self.spec.machine_type,
            devcontainer_path=self.spec.devcontainer_path,
            idle_timeout_minutes=self.spec.idle_timeout_minutes,
            retention_period_minutes=self.spec.retention_period_minutes,
            display_name=self.display_name,
            geo=self.spec.geo,
        )
        self._save(name=cs["name"], pinned_for=None)
        return cs

    async def wait_available(self, cs: dict[str, Any], progress: Progress | None) -> dict[str, Any]:
        deadline = time.monotonic() + self.start_timeout_s
        last = None
        while cs.get("state") != "Available":
            state = cs.get("state")
            if state in FAILED:
                raise OrchError(
                    f"codespace {cs['name']} is {state}",
                    hint=f"look at it on {cs.get('web_url') or 'github.com/codespaces'}",
                )
            if state != last and progress:
                progress(f"codespace {cs['name']}: {state}")
            last = state
            if time.monotonic() > deadline:
                raise OrchError(
                    f"codespace {cs['name']} did not become Available within "
                    f"{self.start_timeout_s:.0f} s (it is {state})",
                    hint="run `orch up` again to keep waiting, or look at it on github.com",
                )
            await asyncio.sleep(self.poll_interval_s)
            cs = await self.client.get(cs["name"])
        return cs

    async def _up(self, progress: Progress | None = None) -> MachineInfo:
        self.layout.ensure()
        keys.ensure_client_key(self.layout)
        cs = await self.find()
        if cs is None:
            cs = await self._create(progress)
        if cs.get("state") in ("Shutdown", "ShuttingDown", "Archived"):
            if cs.get("state") == "ShuttingDown":
                cs = await self._wait_state(cs, {"Shutdown"})
            if progress:
                progress(f"starting codespace {cs['name']}")
            cs = await self.client.start(cs["name"])
            self._save(started_at=time.time())
        elif not self._record().get("started_at"):
            self._save(started_at=_parse_time(cs.get("last_used_at")) or time.time())
        cs = await self.wait_available(cs, progress)
        if self._record().get("pinned_for") != cs["name"]:
            if progress:
                progress("pinning the codespace's host key through gh")
            await self._pin(cs["name"])
        return self._info(cs)

    async def _wait_state(self, cs: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
        deadline = time.monotonic() + self.start_timeout_s
        while cs.get("state") not in wanted and time.monotonic() < deadline:
            await asyncio.sleep(self.poll_interval_s)
            cs = await self.client.get(cs["name"])
        return cs

    async def _pin(self, name: str) -> None:
        """Learn the login user and the sshd host key through gh's authenticated channel."""
        gh = find_gh()
        remote = f"id -un && cat {HOST_KEY_FILE}"
        proc = await asyncio.create_subprocess_exec(
            gh, "codespace", "ssh", "-c", name, "--", remote,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise HostKeyMismatch(
                f"gh did not reach codespace {name} within 180 s to read its host key",
                hint=f"check `gh codespace ssh -c {name}` works, then run `orch up` again",
            ) from None
        lines = [x.strip() for x in out.decode(errors="replace").splitlines() if x.strip()]
        if proc.returncode != 0 or len(lines) < 2 or not lines[-1].startswith("ssh-"):
            raise HostKeyMismatch(
                f"could not read codespace {name}'s host key through gh "
                f"(exit {proc.returncode}): {err.decode(errors='replace').strip()[-300:]}",
                hint="the dev container needs sshd: add the feature "
                "ghcr.io/devcontainers/features/sshd:1 (orch init devcontainer does)",
            )
        keys.pin_host_key(self.layout, self.alias, lines[-1])
        self._save(user=lines[0], pinned_for=name)

    def long_job_warning(self, expected_s: float) -> str | None:
        idle_s = self.spec.idle_timeout_minutes * 60
        if expected_s <= idle_s:
            return None
        return (
            f"job expected to run {expected_s / 60:.0f} min, but GitHub suspends codespace "
            f"machine {self.name!r} after {self.spec.idle_timeout_minutes} min without terminal "
            "or editor activity (a running job does not count): keep a terminal busy, raise "
            "idle_timeout_minutes (at most 240), or run long jobs on an EC2 machine"
        )

    # --- down, terminate, status -------------------------------------------------------------

    async def _down(self) -> MachineInfo:
        cs = await self.find()
        if cs is None:
            return self._absent()
        if cs.get("state") not in ("Shutdown", "ShuttingDown", "Archived"):
            cs = await self.client.stop(cs["name"])
        self._save(started_at=None)
        return self._info(cs)

    async def _terminate_warnings(self) -> list[str]:
        cs = await self.find()
        if cs is None:
            return []
        git = cs.get("git_status") or {}
        ref = git.get("ref") or "its branch"
        out = []
        if git.get("has_uncommitted_changes"):
            out.append(f"codespace {cs['name']} has uncommitted changes on {ref}")
        if git.get("has_unpushed_changes") or git.get("ahead"):
            ahead = git.get("ahead") or 0
            out.append(f"codespace {cs['name']} has unpushed commits on {ref} ({ahead} ahead)")
        return out

    async def _terminate(self) -> MachineInfo:
        cs = await self.find()
        if cs is None:
            return self._absent()
        await self.client.delete(cs["name"])
        keys.unpin_host_key(self.layout, self.alias)
        self._save(name=None, user=None, pinned_for=None, started_at=None)
        info = self._info({**cs, "state": "Deleted"})
        info.detail = f"deleted codespace {cs['name']}"
        return info

    async def _status(self) -> MachineInfo:
        cs = await self.find()
        return self._absent() if cs is None else self._info(cs)

    def _absent(self) -> MachineInfo:
        return MachineInfo(
            name=self.name,
            kind=self.kind,
            state="not-created",
            detail=f"no codespace of {self.spec.repository} named {self.display_name!r}; "
            "`orch up` creates one",
        )

    def _info(self, cs: dict[str, Any]) -> MachineInfo:
        state = STATES.get(str(cs.get("state")), "unknown")
        machine = cs.get("machine") or {}
        cpus = machine.get("cpus")
        started = self._record().get("started_at")
        uptime = time.time() - started if started and state == "running" else None
        return MachineInfo(
            name=self.name,
            kind=self.kind,
            state=state,
            address=cs.get("name"),
            uptime_s=uptime,
            detail=f"GitHub state {cs.get('state')}",
            machine_type=machine.get("name") or self.spec.machine_type,
            idle_timeout_minutes=cs.get("idle_timeout_minutes"),
            price_per_hour=codespaces_cost.price_per_hour(cpus),
            cost_so_far=codespaces_cost.cost(cpus, uptime) if uptime is not None else None,
        )

    # --- the Provider interface: each call closes its HTTP connections when done -----------

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        """One Provider call; the client's connections are closed when the last call in
        flight ends, not under another one (the orch agent reads a machine's status while a
        window's command runs on the same provider)."""
        self._calls += 1
        try:
            yield
        finally:
            self._calls -= 1
            if self._calls == 0:
                await self.client.aclose()

    async def up(self, progress: Progress | None = None) -> MachineInfo:
        async with self._session():
            return await self._up(progress)

    async def down(self) -> MachineInfo:
        async with self._session():
            return await self._down()

    async def status(self) -> MachineInfo:
        async with self._session():
            return await self._status()

    async def terminate_warnings(self) -> list[str]:
        async with self._session():
            return await self._terminate_warnings()

    async def terminate_plan(self) -> str | None:
        async with self._session():
            cs = await self.find()
        return (
            None
            if cs is None
            else f"codespace {cs['name']} ({cs.get('machine', {}).get('name', 'unknown type')})"
        )

    async def terminate(self) -> MachineInfo:
        async with self._session():
            return await self._terminate()

    # --- reach ----------------------------------------------------------------------------

    async def ssh_target(self) -> SSHTarget:
        record = self._record()
        name, user = record.get("name"), record.get("user")
        if not name or not user or record.get("pinned_for") != name:
            raise MachineNotRunning(
                f"machine {self.name!r} (codespace) is not up", hint=f"run `orch up {self.name}`"
            )
        if keys.pinned_key(self.layout, self.alias) is None:
            raise HostKeyMismatch(
                f"no host key is pinned for codespace {name}",
                hint=f"run `orch up {self.name}` to pin it through gh",
            )
        identity = str(self.layout.client_key)
        proxy = shlex.join([find_gh(), "codespace", "ssh", "-c", name, "--stdio", "--", "-i",
                            identity])  # fmt: skip
        return SSHTarget(
            alias=self.alias,
            host=name,
            port=22,
            user=user,
            identity_file=identity,
            host_key_alias=self.alias,
            known_hosts_file=str(self.layout.known_hosts),
            proxy_command=proxy,
        )
