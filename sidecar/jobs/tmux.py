"""The tmux job backend: runs the scripts of `remote_config.job_scripts` on a machine.

Every operation is one round trip over the pooled asyncssh connection (`sh -s` with the
script on stdin). Nothing about a job is kept here: the remote is the source of truth, so a
fresh process (a new CLI call, a restarted sidecar) sees every job exactly as the last one
left it. Log streaming lives in `follow.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING

from remote_config import job_scripts as scripts
from remote_config.jobs import (
    JobInfo,
    StatusCache,
    command_text,
    jobs_from_snapshot,
    parse_snapshot,
    validate_env,
    validate_job_name,
)
from remote_config.model import JobsSection
from sidecar.errors import Conflict, NotFound, OrchError, RemoteCommandFailed, UsageError
from sidecar.jobs.backend import BackendCapabilities, JobBackend
from sidecar.jobs.follow import LogStream
from sidecar.jobs.shell import OpenSSHShell, PersistentShell
from sidecar.ssh.pool import RunResult

if TYPE_CHECKING:
    from sidecar.context import MachineContext

REMOTE_TIMEOUT_S = 60.0


class TmuxBackend(JobBackend):
    """Jobs in tmux on one machine of one project: a thin client of the remote, which holds
    all the state (the Orchestrator keeps one per machine, for its persistent status shell)."""

    kind = "tmux"
    capabilities = BackendCapabilities(attach=True, debug=True, live_code=True, logs="machine")

    def __init__(self, ctx: MachineContext) -> None:
        self.ctx = ctx
        self.machine = ctx.machine
        self._shell: PersistentShell | OpenSSHShell
        if ctx.one_shot:  # a CLI process: no asyncssh import for a status query
            self._shell = OpenSSHShell(lambda words: ctx.ssh_argv(words), scripts.status_prelude())
        else:
            self._shell = PersistentShell(ctx.pool, scripts.status_prelude())
        self.status_cache = StatusCache()

    def close(self) -> None:
        self._shell.close()

    @property
    def workdir(self) -> str:
        return self.ctx.config.remote_dir

    @property
    def settings(self) -> JobsSection:
        return self.ctx.config.config.jobs

    async def prepare_code(self, snapshot: bool | None, name: str = "") -> str | None:
        """A hard-linked snapshot of the synced tree for a new job, or None (the live folder).

        `snapshot=None` follows `[jobs] snapshot` (off for names matching `[jobs] live`) and
        quietly uses the live folder when the project was never synced there;
        `snapshot=True` insists and says what to do instead. A remote tree this laptop's sync
        did not write raises `StaleTree` either way (no job runs stale or foreign code).
        """
        from fnmatch import fnmatchcase

        from sidecar.sync.snapshot import NotSynced, prepare_snapshot

        live = any(fnmatchcase(name, pattern) for pattern in self.settings.live)
        wanted = (self.settings.snapshot and not live) if snapshot is None else snapshot
        if not wanted:
            return None
        try:
            path, _generation = await prepare_snapshot(self.ctx)
        except NotSynced:
            if snapshot:
                raise
            return None
        return path

    async def _run(self, script: str, name: str | None = None, timeout: float | None = None) -> str:
        target = await self.ctx.target()
        result = await self.ctx.pool.run(
            target, "sh -s", input=script, timeout=timeout or REMOTE_TIMEOUT_S
        )
        if result.exit_status != 0:
            raise remote_error(result, name, self.machine)
        return result.stdout

    # -- operations --------------------------------------------------------------------------
    async def run(
        self,
        name: str,
        command: str | Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        replace: bool = False,
        workdir: str | None = None,
    ) -> JobInfo:
        name = checked_name(name)
        try:
            text = command_text(command)
            merged = validate_env({**self.settings.env, **(env or {})})
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return await self._start(name, text, merged, replace=replace, workdir=workdir)

    async def restart(self, name: str, workdir: str | None = None) -> JobInfo:
        return await self._start(checked_name(name), None, None, replace=True, workdir=workdir)

    async def _start(
        self,
        name: str,
        text: str | None,
        env: Mapping[str, str] | None,
        *,
        replace: bool,
        workdir: str | None = None,
    ) -> JobInfo:
        """Start in `workdir` (a snapshot of the synced tree) or the live project folder."""
        s = self.settings
        script = scripts.start_script(
            name,
            workdir or self.workdir,
            text,
            env,
            replace=replace,
            grace_s=s.stop_grace_seconds,
            retention_days=s.log_retention_days,
            max_log_bytes=s.log_max_mb * 1024 * 1024,
            mode="snapshot" if workdir else "live",
            setup=self.ctx.provider.job_setup(name),
        )
        out = await self._run(script, name, timeout=REMOTE_TIMEOUT_S + s.stop_grace_seconds)
        return _pick(out, name)

    async def status(self) -> list[JobInfo]:
        """Every job, in one round trip on the persistent shell (see shell.py)."""
        target = await self.ctx.target()
        body = scripts.status_body(self.workdir, self.status_cache.keys())
        code, out = await self._shell.run(target, body, timeout=REMOTE_TIMEOUT_S)
        if code != 0:
            raise remote_error(RunResult(code, "", out, 0.0), None, self.machine)
        snap = parse_snapshot(out)
        self.status_cache.apply(snap)
        return jobs_from_snapshot(snap)

    async def info(self, name: str) -> JobInfo:
        return await super().info(checked_name(name))

    async def stop(self, name: str) -> JobInfo:
        grace = self.settings.stop_grace_seconds
        script = scripts.stop_script(checked_name(name), self.workdir, grace)
        return _pick(await self._run(script, name, timeout=REMOTE_TIMEOUT_S + grace), name)

    async def rm(self, name: str, purge: bool = False) -> None:
        await self._run(scripts.rm_script(checked_name(name), self.workdir, purge), name)

    def stream(
        self,
        name: str,
        *,
        tail: int | None = None,
        follow: bool = False,
        offset: int | None = None,
    ) -> AsyncIterator[str]:
        """The job's log as text chunks; with `follow`, until the job ends (survives
        reconnects: it resumes from the last byte it yielded). Each chunk is a `LogText`
        whose `offset` another stream may resume from (`offset`, then `tail` is unused)."""
        stream = LogStream(self.ctx, checked_name(name), self.workdir, offset)
        return stream.chunks(tail, follow)

    async def logs(self, name: str, tail: int | None = None) -> str:
        return "".join([chunk async for chunk in self.stream(name, tail=tail)])

    async def attach_argv(self, name: str) -> list[str]:
        job = await self.info(name)
        if job.state != "running":
            raise OrchError(
                f"job {name} is not running ({job.state}); there is no session to attach to",
                hint=f"see its output with: orch logs {name}",
            )
        return await self.ctx.ssh_argv([scripts.attach_command(name)], tty=True)


def checked_name(name: str) -> str:
    """`name` if it can name a job, else UsageError saying what is allowed."""
    try:
        return validate_job_name(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _not_found(name: str) -> NotFound:
    return NotFound(f"no job named {name!r}", hint="list the jobs with: orch status")


def _pick(output: str, name: str) -> JobInfo:
    for job in jobs_from_snapshot(parse_snapshot(output)):
        if job.name == name:
            return job
    raise _not_found(name)


def remote_error(result: RunResult, name: str | None, machine: str) -> OrchError:
    """Turn a script's exit status into the orch error the user can act on."""
    message = result.stderr.strip().removeprefix("orch: ").strip()
    code = result.exit_status
    if code == scripts.EXIT_NOT_FOUND:
        return _not_found(name or "?")
    if code == scripts.EXIT_CONFLICT:
        if "already running" in message:
            return Conflict(
                message, hint=f"stop it first (orch stop {name}) or pass --replace to restart it"
            )
        return Conflict(message, hint=f"stop it first: orch stop {name}")
    if code == scripts.EXIT_NO_TMUX:
        return OrchError(
            f"tmux is not installed on machine {machine!r}",
            hint="install it there (e.g. sudo apt-get install tmux), then retry",
        )
    return RemoteCommandFailed(
        f"the job operation failed on {machine!r} (exit status {code}): "
        f"{message[-500:] or result.stdout.strip()[-500:]}",
        exit_status=code,
        stderr=result.stderr,
    )
