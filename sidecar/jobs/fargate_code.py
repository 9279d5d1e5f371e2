"""A job's code for Fargate: the synced tree's snapshot, packed once, content-addressed in S3.

The code a Fargate task runs is exactly what a tmux job would run: the hard-linked snapshot
of the synced tree on the machine (`sidecar/sync/snapshot.py`, same ignore rules, never the
laptop's unsynced state). It is packed there with a deterministic tar (sorted names, numeric
owner 0, gzip without a timestamp; orch's own `.orch` folder left out), streamed back over
OpenSSH into a temporary file while hashing, and uploaded as `code/<sha256>.tar.gz` unless
that object exists. A snapshot generation already packed is not packed again (the digest
is cached per machine, folder and generation).
"""

from __future__ import annotations

import asyncio
import hashlib
import shlex
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sidecar.errors import NotFound, RemoteCommandFailed

if TYPE_CHECKING:
    from sidecar.context import MachineContext
    from sidecar.jobs.aws import AwsSession
    from sidecar.jobs.fargate_store import Store

CHUNK = 1 << 20


def pack_command(path: str) -> str:
    """The remote sh command writing the snapshot at `path` as a deterministic tar.gz."""
    return (
        f"cd {shlex.quote(path)} && tar --sort=name --owner=0 --group=0 --numeric-owner "
        "--exclude=./.orch -cf - . | gzip -n -6"
    )


def code_key(digest: str) -> str:
    return f"code/{digest}.tar.gz"


async def pack_snapshot(ctx: MachineContext, path: str, into: Path) -> str:
    """Stream the snapshot's archive into `into`; returns its sha256."""
    argv = await ctx.ssh_argv([pack_command(path)])
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    digest = hashlib.sha256()
    with into.open("wb") as out:
        while chunk := await proc.stdout.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    err = (await proc.stderr.read()).decode(errors="replace")
    code = await proc.wait()
    if code != 0:
        raise RemoteCommandFailed(
            f"could not pack the snapshot {path} on machine {ctx.machine!r}: {err.strip()[-400:]}",
            hint="check free space in the machine's temp folder, then retry",
            exit_status=code,
            stderr=err,
        )
    return digest.hexdigest()


async def ship_snapshot(
    ctx: MachineContext, aws: AwsSession, store: Store, bucket: str, path: str, generation: int
) -> str:
    """The S3 key of the snapshot's archive, uploading it if S3 does not have it yet."""
    cache_key = f"code:{ctx.machine}:{ctx.config.remote_dir}:{generation}:{path}"
    cached = store.cache_get(cache_key)
    if cached and await _exists(aws, bucket, cached):
        return cached
    with tempfile.TemporaryDirectory(prefix="orch-code-") as tmp:
        archive = Path(tmp) / "code.tar.gz"
        digest = await pack_snapshot(ctx, path, archive)
        key = code_key(digest)
        if not await _exists(aws, bucket, key):
            with archive.open("rb") as body:  # one PUT (up to 5 GB): errors stay ClientErrors
                await aws.call(
                    "s3",
                    "put_object",
                    Body=body,
                    Bucket=bucket,
                    Key=key,
                    ServerSideEncryption="AES256",
                )
    store.cache_put(cache_key, key)
    return key


async def _exists(aws: AwsSession, bucket: str, key: str) -> bool:
    try:
        await aws.call("s3", "head_object", Bucket=bucket, Key=key)
    except NotFound:  # head_object says 404 both for a missing key and a missing bucket
        return False
    return True


def digest_of_key(key: str) -> str:
    return key.rsplit("/", 1)[-1].split(".", 1)[0]
