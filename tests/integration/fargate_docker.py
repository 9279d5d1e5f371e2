"""Where the Fargate tests run a task's container command: in a container through a private
Docker daemon the tests start themselves, or as a local process where no daemon can run.

The daemon (Debian's `docker.io`) gets its own data and exec roots and socket under /tmp and
no bridge or iptables rules, so it touches nothing of the host's; containers use the host's
network (moto and the presigned URLs are on 127.0.0.1, as a Fargate task reaches AWS). The
image has no registry behind it: `scripts/fargate_image.sh` builds a root file system from
Debian packages (mmdebstrap: sh, bash, tar, python3; what the bootstrap and the worker need,
as the docs ask of an image) into ~/.cache/orch-dev/fargate-image/, and the daemon imports it.

`why_not()` says why containers cannot be used (no dockerd, not root, no cached image,
`ORCH_FARGATE_TASKS=local`, the daemon failed to start); then tasks run as local processes
and the tests say so in their output (a warning naming the reason).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("ORCH_DEV_CACHE", str(Path.home() / ".cache" / "orch-dev")))
ROOTFS = CACHE / "fargate-image" / "rootfs.tar"
IMAGE = "orch-fargate-task:bookworm"


@dataclass
class Runtime:
    """How tasks run: `docker` is the client argv prefix when they run in containers."""

    runs_as: str
    shared: Path  # a folder the test and its tasks both see, at the same path
    docker: list[str] | None = None
    names: list[str] = field(default_factory=list)

    def popen(
        self, command: Sequence[str], env: Mapping[str, str], name: str, tmp: Path
    ) -> subprocess.Popen[bytes]:
        """Start a task's container command with its environment; stdout+stderr piped."""
        if self.docker is None:
            return subprocess.Popen(
                list(command),
                env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp), "HOME": str(tmp), **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.names.append(name)
        argv = [*self.docker, "run", "--rm", "--name", name, "--network", "host"]
        argv += ["-v", f"{self.shared}:{self.shared}:ro"]
        for key in env:  # `-e KEY` takes the value from the client's environment (not argv)
            argv += ["-e", key]
        # The docker client passes SIGTERM on to the container (sig-proxy), as ECS sends it.
        return subprocess.Popen(
            [*argv, IMAGE, *command],
            env={"PATH": os.environ["PATH"], "HOME": str(tmp), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, proc: subprocess.Popen[bytes], name: str) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if self.docker is not None:
            subprocess.run(
                [*self.docker, "rm", "-f", name], capture_output=True, timeout=30, check=False
            )


def why_not() -> str | None:
    if os.environ.get("ORCH_FARGATE_TASKS") == "local":
        return "ORCH_FARGATE_TASKS=local"
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        return "dockerd is not installed (Debian: apt-get install docker.io)"
    if os.geteuid() != 0:
        return "not root: this test starts its own dockerd, which needs root"
    if not ROOTFS.is_file():
        return f"no cached task image {ROOTFS} (build it once: bash scripts/fargate_image.sh)"
    return None


def _local(reason: str, shared: Path) -> Runtime:
    runs_as = f"local processes, not containers: {reason}"
    warnings.warn(f"Fargate tasks run as {runs_as}", stacklevel=3)
    return Runtime(runs_as, shared)


def _unmount_under(root: Path) -> None:
    mounts = Path("/proc/mounts").read_text().splitlines()
    points = [m.split()[1] for m in mounts if m.split()[1].startswith(f"{root}/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@contextlib.contextmanager
def runtime() -> Iterator[Runtime]:
    """A private dockerd with the task image for the duration, else local processes."""
    shared = Path(tempfile.mkdtemp(prefix="orch-fg-shared-"))
    try:
        reason = why_not()
        if reason:
            yield _local(reason, shared)
            return
        root = Path(tempfile.mkdtemp(prefix="orchd-", dir="/tmp"))  # short socket path
        sock = f"unix://{root}/sock"
        log = (root / "log").open("wb")
        daemon = subprocess.Popen(
            [
                "dockerd",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                f"--data-root={root}/data",
                f"--exec-root={root}/exec",
                f"--pidfile={root}/pid",
                "-H",
                sock,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        docker = [shutil.which("docker") or "docker", "-H", sock]
        try:
            started = time.monotonic()
            while subprocess.run([*docker, "version"], capture_output=True).returncode != 0:
                if daemon.poll() is not None or time.monotonic() - started > 20:
                    tail = (root / "log").read_text(errors="replace")[-500:]
                    yield _local(f"dockerd did not start: {tail}", shared)
                    return
                time.sleep(0.1)
            imported = subprocess.run(
                [*docker, "import", str(ROOTFS), IMAGE], capture_output=True, text=True
            )
            if imported.returncode != 0:
                yield _local(f"docker import failed: {imported.stderr[-300:]}", shared)
                return
            took = time.monotonic() - started
            yield Runtime(
                f"containers ({IMAGE}, private dockerd ready with the image in {took:.1f} s)",
                shared,
                docker,
            )
        finally:
            daemon.terminate()  # dockerd stops its containers and unmounts on SIGTERM
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=10)
            log.close()
            _unmount_under(root)  # dockerd leaves its netns bind mount behind
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
