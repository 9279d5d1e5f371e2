"""Make debugpy importable by the remote interpreter, without pip or network on the remote.

If `python -c "import debugpy"` fails there, orch says so and ships the debugpy package that
orch itself depends on: one gzip'd tar streamed over the pooled connection and unpacked into
`~/.orch/debugpy/<version>/`, which is then put on PYTHONPATH for debug jobs. The remote
interpreter's own site-packages are never modified.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sidecar.errors import RemoteCommandFailed
from sidecar.machines.base import SSHTarget
from sidecar.ssh.pool import ConnectionPool


@dataclass(frozen=True)
class DebugpyOnRemote:
    python: str
    version: str
    pythonpath: str | None  # absolute folder for PYTHONPATH, or None when already importable


def local_debugpy() -> tuple[str, Path]:
    import debugpy

    return str(debugpy.__version__), Path(debugpy.__file__).parent


def _tarball(package: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=3) as tar:
        tar.add(
            package,
            arcname="debugpy",
            filter=lambda info: None if "__pycache__" in info.name else info,
        )
    return buffer.getvalue()


async def ensure_debugpy(
    pool: ConnectionPool, target: SSHTarget, python: str, say: Callable[[str], None] | None = None
) -> DebugpyOnRemote:
    version, package = local_debugpy()
    probe = await pool.run(
        target, f"{shlex.quote(python)} -c 'import debugpy, sys; print(debugpy.__version__)'"
    )
    if probe.exit_status == 0:
        return DebugpyOnRemote(python, probe.stdout.strip(), None)
    if probe.exit_status == 127 or "not found" in probe.stderr:
        raise RemoteCommandFailed(
            f"{python!r} was not found on {target.alias}",
            hint="set [debug] python in orch.toml to the remote interpreter's path",
        )
    folder = f".orch/debugpy/{version}"
    check = await pool.run(
        target, f'printf %s "$HOME"; test -f {shlex.quote(folder)}/debugpy/__init__.py'
    )
    home = check.stdout
    if check.exit_status != 0:
        if say:
            say(
                f"debugpy is not installed for {python} on {target.alias}; "
                f"copying debugpy {version} to ~/{folder} (the interpreter is not modified)"
            )
        conn = await pool.connection(target)
        quoted = shlex.quote(folder)
        result = await conn.run(
            f"mkdir -p {quoted}.tmp && tar -xzf - -C {quoted}.tmp && "
            f"rm -rf {quoted} && mv {quoted}.tmp {quoted}",
            input=_tarball(package),
            encoding=None,
            check=False,
        )
        if result.exit_status != 0:
            stderr = result.stderr or b""
            text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
            raise RemoteCommandFailed(f"could not unpack debugpy on {target.alias}: {text[-300:]}")
    return DebugpyOnRemote(python, version, f"{home}/{folder}")
