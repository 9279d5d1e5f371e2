"""Make debugpy importable by the remote interpreter, without pip or network on the remote.

One probe (a single round trip) asks the remote interpreter for debugpy, a free loopback
port and the home folder. If debugpy is not importable there, orch says so and ships the
debugpy package orch itself depends on: one gzip'd tar streamed over the pooled connection
and unpacked into `~/.orch/debugpy/<version>/`, which debug jobs then get on PYTHONPATH.
The remote interpreter's own site-packages are never modified.
"""

from __future__ import annotations

import io
import random
import shlex
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from remote_config.debug import USED_PORTS_COMMAND, parse_probe, pick_free_port, probe_command
from sidecar.errors import RemoteCommandFailed
from sidecar.machines.base import SSHTarget
from sidecar.ssh.pool import ConnectionPool


@dataclass(frozen=True)
class DebugSetup:
    python: str
    version: str
    pythonpath: str | None  # orch's shipped copy (for PYTHONPATH), None: the interpreter's own
    free_port: int  # a free port on the machine's loopback for debugpy to listen on
    home: str  # the remote home folder


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


_known: dict[tuple[str, ...], DebugSetup] = {}


async def ensure_debugpy(
    pool: ConnectionPool, target: SSHTarget, python: str, say: Callable[[str], None] | None = None
) -> DebugSetup:
    """Make debugpy importable by `python` on the machine; one round trip when it already is.

    A warm process remembers the answer per machine and interpreter, and then only reads the
    remote's /proc/net/tcp to pick a free port (no interpreter start-up on the remote).
    """
    key = (target.alias, target.host, str(target.port), target.known_hosts_file, python)
    known = _known.get(key)
    if known is not None:
        check = (
            f"test -f {shlex.quote(known.pythonpath)}/debugpy/__init__.py && "
            if (known.pythonpath)
            else ""
        )
        listing = await pool.run(target, check + USED_PORTS_COMMAND)
        port = pick_free_port(listing.stdout, random.sample(range(20000, 32768), 64))
        if listing.exit_status == 0 and port is not None:
            return replace(known, free_port=port)
    setup = await _probe_and_ship(pool, target, python, say)
    _known[key] = setup
    return setup


async def _probe_and_ship(
    pool: ConnectionPool, target: SSHTarget, python: str, say: Callable[[str], None] | None
) -> DebugSetup:
    version, package = local_debugpy()
    shipped = f"~/.orch/debugpy/{version}"
    probe = await pool.run(target, probe_command(python, shipped))
    if probe.exit_status == 127 or (probe.exit_status != 0 and "not found" in probe.stderr):
        raise RemoteCommandFailed(
            f"{python!r} was not found on {target.alias}",
            hint="set [debug] python in orch.toml to the remote interpreter's path",
        )
    if probe.exit_status != 0:
        raise RemoteCommandFailed(
            f"probing {python} on {target.alias} failed: {probe.stderr.strip()[-300:]}"
        )
    port, found, where, home = parse_probe(probe.stdout)
    shipped_abs = f"{home}/.orch/debugpy/{version}"
    if found is not None:
        return DebugSetup(python, found, shipped_abs if where == shipped_abs else None, port, home)
    if say:
        say(
            f"debugpy is not installed for {python} on {target.alias}; copying debugpy "
            f"{version} to {shipped} (the interpreter itself is not modified)"
        )
    conn = await pool.connection(target)
    quoted = shlex.quote(shipped_abs)
    result = await conn.run(
        # A private temp folder, then a rename: concurrent shippers never see half a copy.
        f'd={quoted}; t=$d.tmp.$$; rm -rf "$t" && mkdir -p "$t" && '
        'tar -xzf - -C "$t" && if [ -f "$d/debugpy/__init__.py" ]; then rm -rf "$t"; '
        'else rm -rf "$d" && mv "$t" "$d"; fi',
        input=_tarball(package),
        encoding=None,
        check=False,
    )
    if result.exit_status != 0:
        stderr = result.stderr or b""
        text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
        raise RemoteCommandFailed(f"could not unpack debugpy on {target.alias}: {text[-300:]}")
    return DebugSetup(python, version, shipped_abs, port, home)
