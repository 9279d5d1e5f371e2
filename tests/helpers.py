"""Shared test helpers: free ports, running the real `orch` CLI, a real OpenSSH sshd on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_USER = "orch-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_orch(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real `orch` command (this interpreter, this checkout) and capture its output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        input=input,
    )


# Runs the CLI as `orch` does, then says on stderr which heavy modules it had imported.
_HEAVY = "\norch-test-heavy: "
_THIN = (
    "import runpy, sys\n"
    "sys.argv = ['orch', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('sidecar.cli.main', run_name='__main__')\n"
    "finally:\n"
    "    heavy = [m for m in ('asyncssh', 'cryptography', 'pydantic') if m in sys.modules]\n"
    f"    sys.stderr.write({_HEAVY!r} + ' '.join(heavy) + '\\n')\n"
)


def run_orch_checked(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`run_orch`, and which of asyncssh/cryptography/pydantic the CLI process had imported
    at its end (a thin client of the orch agent imports no asyncssh; `orch status` and
    `orch logs` answered by it no pydantic either); stderr comes back without the list."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", _THIN, *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
    stderr, _, heavy = done.stderr.rpartition(_HEAVY)
    done.stderr = stderr
    return done, heavy.split()


def stop_pid(pid: int, timeout: float = 5.0) -> None:
    """Stop a process we started: SIGTERM, then SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@dataclass
class Sshd:
    """A real OpenSSH sshd on 127.0.0.1, logging in as TEST_USER with a generated key."""

    port: int
    folder: Path
    client_key: Path
    host_public_key: str
    user: str
    home: Path
    proc: subprocess.Popen[bytes] | None = None

    def config_text(self) -> str:
        return (
            f"Port {self.port}\nListenAddress 127.0.0.1\n"
            f"HostKey {self.folder / 'host_ed25519_key'}\n"
            f"PidFile {self.folder / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}\n"
            "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nAllowTcpForwarding yes\nPermitRootLogin no\n"
            f"AllowUsers {self.user}\nSetEnv SHLVL=1\n"
            "Subsystem sftp internal-sftp\nMaxSessions 64\nMaxStartups 64:30:128\n"
        )

    def start(self) -> None:
        cfg = self.folder / "sshd_config"
        cfg.write_text(self.config_text())
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                shutil.which("sshd") or "/usr/sbin/sshd",
                "-D",
                "-f",
                str(cfg),
                "-E",
                str(self.folder / "sshd.log"),
            ],
            stdin=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid)
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=5)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def machine_toml(self, name: str = "box", proxy_log: Path | None = None) -> str:
        """The [machines] section for this sshd; with `proxy_log`, reached only through a
        ProxyCommand (tests/stdio_proxy.py, which logs each use there): its host name does
        not resolve, so nothing can connect to it directly."""
        host, extra = "127.0.0.1", ""
        if proxy_log is not None:
            host = "box.orch-proxied.invalid"
            proxy = Path(__file__).with_name("stdio_proxy.py")
            extra = (
                f"proxy_command = '{sys.executable} {proxy} 127.0.0.1 {self.port} {proxy_log}'\n"
            )
        return (
            f'[machines.{name}]\nkind = "ssh"\nhost = "{host}"\nport = {self.port}\n'
            f'user = "{self.user}"\nidentity_file = "{self.client_key}"\n'
            f'host_key = "{self.host_public_key}"\n{extra}'
        )

    def ssh_argv(self, command: str) -> list[str]:
        known = self.folder / "known_hosts"
        known.write_text(f"[127.0.0.1]:{self.port} {self.host_public_key}\n")
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-i",
            str(self.client_key),
            "-p",
            str(self.port),
            f"{self.user}@127.0.0.1",
            command,
        ]


def make_sshd(folder: Path) -> Sshd:
    """Generate keys and start sshd (needs root: it logs in as the orch-test user)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("host_ed25519_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)],
            check=True,
        )
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    host_pub = " ".join((folder / "host_ed25519_key.pub").read_text().split()[:2])
    import pwd

    entry = pwd.getpwnam(TEST_USER)
    sshd = Sshd(free_port(), folder, folder / "client_key", host_pub, TEST_USER, Path(entry.pw_dir))
    sshd.start()
    return sshd


def sshd_available() -> str | None:
    """None when a real sshd can run here, else the reason it cannot."""
    import pwd

    if os.geteuid() != 0:
        return "real-sshd tests need root (they log in as the orch-test user); run scripts/test.sh"
    if not shutil.which("sshd") and not Path("/usr/sbin/sshd").exists():
        return "openssh-server is not installed; run scripts/setup.sh"
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        return f"user {TEST_USER} is missing; scripts/setup.sh creates it"
    return None


def own_remote_dir(prefix: str = "t") -> str:
    """A remote project folder no other test or benchmark uses (the sshd user is shared)."""
    return f"~/work/{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def sync_toml(remote_dir: str) -> str:
    return f'[sync]\nremote_dir = "{remote_dir}"\n'


async def job_names(orch: object) -> set[str]:
    """Names of the jobs on the orchestrator's default machine."""
    return {job.name for job in await orch.jobs_status()}  # type: ignore[attr-defined]


async def clean_remote(orch: object, before: set[str], folders: list[str]) -> None:
    """Remove what a test made on a shared machine: the jobs that were not there `before`,
    and `folders` (its remote project folder and snapshots); nothing else."""
    from remote_config import job_scripts as js

    made = sorted(await job_names(orch) - before)
    target = await orch.ssh_target()  # type: ignore[attr-defined]
    script = js.cleanup_script(made, folders)
    await orch.pool.run(target, "sh -s", input=script, timeout=30)  # type: ignore[attr-defined]


@contextlib.contextmanager
def http_files(folder: Path, files: dict[str, str]) -> Iterator[int]:
    """A plain HTTP server on 127.0.0.1 serving `files` from `folder`; yields its port and
    stops it (by PID) afterwards."""
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield port
    finally:
        stop_pid(proc.pid)
        proc.wait()
