"""Bounded waits for an instance: its state (pending → running, stopping → stopped) and its
sshd (reachable, then the pinned host key verified by a real SSH handshake).

The clock and sleep are parameters, so tests drive these loops with scripted state
sequences: moto answers every describe with the final state at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from sidecar.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectTimeout,
    HostKeyMismatch,
    OrchError,
    Unreachable,
)
from sidecar.machines.base import Progress, SSHTarget

Describe = Callable[[], Awaitable[tuple[str, str | None]]]  # (state, state reason)
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


async def wait_for_state(
    describe: Describe,
    want: str,
    *,
    instance_id: str,
    timeout: float,
    poll: float = 3.0,
    progress: Progress | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
) -> str:
    """Poll until the instance is in `want`; a state it cannot leave fails at once."""
    started = clock()
    # States from which `want` can no longer be reached without someone acting.
    dead_ends = {
        "running": {"stopped", "shutting-down", "terminated"},
        "stopped": {"terminated", "shutting-down"},
    }.get(want, set())
    while True:
        state, reason = await describe()
        if state == want:
            return state
        if state in dead_ends:
            because = f" ({reason})" if reason else ""
            raise OrchError(
                f"instance {instance_id} became {state} while orch waited for {want}{because}",
                hint="see the instance in the EC2 console; for spot capacity try another "
                "availability_zone or spot = false",
            )
        elapsed = clock() - started
        if elapsed >= timeout:
            raise OrchError(
                f"instance {instance_id} is still {state} after {elapsed:.0f} s "
                f"(waited for {want})",
                hint="run the command again to keep waiting, or check the EC2 console",
            )
        if progress:
            progress(f"{instance_id}: {state} ({elapsed:.0f} s), waiting for {want}")
        await sleep(poll)


Connect = Callable[[SSHTarget], Awaitable[None]]


async def wait_for_ssh(
    target: SSHTarget,
    connect: Connect,
    *,
    timeout: float,
    poll: float = 3.0,
    progress: Progress | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
) -> None:
    """Retry an SSH handshake until it succeeds. A host key that does not match the pinned
    one is refused at once (never retried, never re-learnt); after `timeout` the last
    reason is reported."""
    started = clock()
    last: OrchError | None = None
    while True:
        try:
            await connect(target)
            return
        except HostKeyMismatch:
            raise
        except (Unreachable, ConnectTimeout, AuthenticationFailed, ConnectionFailed) as exc:
            # Booting: sshd not listening yet, or cloud-init has not installed the key yet.
            last = exc
        elapsed = clock() - started
        if elapsed >= timeout:
            reason = last.message if last else "no answer"
            raise ConnectTimeout(
                f"the machine's sshd did not answer within {timeout:.0f} s: {reason}",
                hint="the instance may still be booting: run `orch up` again; with reach = "
                "'public-ip' check that ssh_from is this computer's public address",
            )
        if progress:
            progress(f"waiting for SSH on {target.host} ({elapsed:.0f} s)")
        await sleep(poll)
