"""`orch ports list|add|remove`: the client side of the forwarder, with truthful state.

Adds and removes go to the machine's one forward owner (started in the background when no
process owns the forwards yet, see `forwarder.py`). Listing reads the owner's state file and
checks it against the system: a forward counts as active only while its owner holds the lock
and the owner's process really listens on the port; otherwise it is dead, and `revive`
starts a new owner with the same forwards (`orch ports list` and `orch status` call it).
Forwards declared in orch.toml that are not running are listed as "stopped".

On the local machine (this very computer) a forward from a port to the same port would take
the number that the job itself wants to bind: such forwards are not started and are listed
as "direct" (the port is already reachable as it is).
"""

from __future__ import annotations

import asyncio
from typing import Any

from remote_config.model import OrchConfig
from remote_config.ports import PortSyntaxError, check_host, check_port
from remote_config.ssh_config import LocalForwardSpec
from sidecar.errors import ConnectionFailed, NotFound, OrchError, UsageError
from sidecar.layout import Layout
from sidecar.machines.base import SSHTarget
from sidecar.ssh.forwarder import owner_alive, read_state, request, spawn_owner
from sidecar.ssh.forwards import ForwardState, PortForwardInfo, PortsResult, forward_paths
from sidecar.ssh.local_ports import port_holders

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def configured(config: OrchConfig, machine: str) -> tuple[LocalForwardSpec, ...]:
    """The `[[ports]]` of orch.toml that apply to `machine`."""
    return tuple(
        LocalForwardSpec(f.local, f.remote_host, f.remote_port, f.reverse)
        for f in config.ports
        if f.machine in (None, machine)
    )


def requested_spec(
    config: OrchConfig,
    machine: str,
    local_port: int,
    remote_port: int | None,
    remote_host: str,
    reverse: bool,
) -> tuple[LocalForwardSpec, bool]:
    """The forward a front end asked for, checked once for all of them (UsageError, exit 2),
    with orch.toml's entry for the same port filling in what was left out; and whether
    orch.toml declares it."""
    try:
        check_port(local_port, "local port")
        if remote_port is not None:
            check_port(remote_port, "remote port")
        check_host(remote_host)
    except PortSyntaxError as exc:
        raise UsageError(str(exc), hint="ports are whole numbers 1-65535") from None
    default = next(
        (
            f
            for f in configured(config, machine)
            if f.local_port == local_port and f.reverse == reverse
        ),
        None,
    )
    if remote_port is None and default is not None:
        remote_port, remote_host = default.remote_port, default.remote_host
    spec = LocalForwardSpec(local_port, remote_host, remote_port or local_port, reverse)
    return spec, default is not None


def is_direct(kind: str, spec: LocalForwardSpec) -> bool:
    """A forward that would only tie a port of this computer to the same port of itself."""
    return kind == "local" and spec.remote_host in _LOOPBACK and spec.local_port == spec.remote_port


def _info(
    spec: LocalForwardSpec,
    machine: str,
    state: ForwardState,
    detail: str,
    from_config: bool = False,
) -> PortForwardInfo:
    return PortForwardInfo(
        local_port=spec.local_port,
        remote_host=spec.remote_host,
        remote_port=spec.remote_port,
        state=state,
        machine=machine,
        from_config=from_config,
        reverse=spec.reverse,
        detail=detail,
    )


def direct_info(spec: LocalForwardSpec, machine: str, from_config: bool) -> PortForwardInfo:
    detail = (
        f"the local machine is this computer: 127.0.0.1:{spec.local_port} is "
        "reachable as it is; not forwarded (the port stays free for the job)"
    )
    return _info(spec, machine, "direct", detail, from_config)


def _spec(raw: dict[str, Any]) -> LocalForwardSpec:
    return LocalForwardSpec(
        int(raw["local_port"]),
        str(raw.get("remote_host", "127.0.0.1")),
        int(raw["remote_port"]),
        bool(raw.get("reverse", False)),
    )


def _dead(spec: LocalForwardSpec, machine: str, detail: str) -> PortForwardInfo:
    return _info(spec, machine, "dead", detail)


def dead_forwards(layout: Layout, alias: str) -> list[LocalForwardSpec]:
    """Forwards whose owner died without stopping them (killed, crashed): to be restarted."""
    paths = forward_paths(layout, alias)
    if owner_alive(paths):
        return []
    state = read_state(paths)
    if state.get("pid") is None:  # stopped on purpose (orch down, last forward removed)
        return []
    return [_spec(raw) for raw in state.get("forwards", [])]


async def revive(
    layout: Layout, target: SSHTarget, machine: str, dead: list[LocalForwardSpec]
) -> list[PortForwardInfo]:
    """Start the dead forwards again; returns the ones that could not be, saying why (the
    new owner's state no longer lists them, so this is the one place that still knows)."""
    failed: list[PortForwardInfo] = []
    for spec in dead:
        try:
            await add_port(layout, target, machine, spec)
        except OrchError as exc:
            failed.append(
                _dead(
                    spec,
                    machine,
                    f"the forwarder died and it could not be restarted: {exc.message}",
                )
            )
    return failed


def list_ports(
    layout: Layout,
    alias: str,
    machine: str,
    configured: tuple[LocalForwardSpec, ...] = (),
    direct: tuple[LocalForwardSpec, ...] = (),
) -> PortsResult:
    paths = forward_paths(layout, alias)
    state = read_state(paths)
    alive = owner_alive(paths)
    pid = state.get("pid") if alive else None
    out: list[PortForwardInfo] = []
    config_keys = {c.key for c in configured}
    for raw in state.get("forwards", []):
        spec = _spec(raw)
        info = PortForwardInfo(
            local_port=spec.local_port,
            remote_host=spec.remote_host,
            remote_port=spec.remote_port,
            state=raw.get("state", "active") if alive else "dead",
            machine=machine,
            owner_pid=pid,
            from_config=spec.key in config_keys,
            reverse=spec.reverse,
        )
        if not alive:
            info.detail = f"the forwarder (pid {state.get('pid')}) is gone"
        elif spec.reverse:
            if raw.get("error"):
                info.state, info.detail = "reconnecting", str(raw["error"])
        elif pid is not None and pid not in {h.pid for h in port_holders(spec.local_port)}:
            info.state, info.detail = "dead", f"pid {pid} does not listen on port {spec.local_port}"
        elif info.state == "reconnecting" and state.get("error"):
            info.detail = str(state["error"])
        out.append(info)
    for raw in state.get("lost", []) if alive else []:
        spec = _spec(raw)
        out.append(
            _dead(
                spec,
                machine,
                str(raw.get("detail") or "the forwarder died; it could not be restarted"),
            )
        )
    running = {(p.reverse, p.remote_port if p.reverse else p.local_port) for p in out}
    for spec in configured:
        if spec.key not in running:
            out.append(
                PortForwardInfo(
                    local_port=spec.local_port,
                    remote_host=spec.remote_host,
                    remote_port=spec.remote_port,
                    state="stopped",
                    machine=machine,
                    from_config=True,
                    reverse=spec.reverse,
                )
            )
    out += [direct_info(spec, machine, True) for spec in direct]
    return PortsResult(ports=sorted(out, key=lambda p: (p.reverse, p.local_port, p.remote_port)))


async def _ensure_owner(layout: Layout, target: SSHTarget, machine: str) -> None:
    """The orch agent hosts the machine's forwards (its one connection per machine), unless
    some process already owns them; with `ORCH_NO_AGENT=1`, a background forwarder does."""
    from sidecar import agent_client as client

    if owner_alive(forward_paths(layout, target.alias)):
        return
    if not client.enabled():
        await spawn_owner(layout, target, machine)
        return
    paths, _ = await asyncio.to_thread(client.ensure, layout)
    request = {"op": "forwards.host", "machine": machine, "target": target.model_dump_json()}
    await client.acall(paths, request, resend=True)  # (not run by a stopping agent: again)


async def add_port(
    layout: Layout, target: SSHTarget, machine: str, spec: LocalForwardSpec
) -> PortForwardInfo:
    """Forward `spec` through the machine's owner; PortBusy names the holder, nothing moves."""
    paths = forward_paths(layout, target.alias)
    payload = {
        "op": "add",
        "local_port": spec.local_port,
        "remote_host": spec.remote_host,
        "remote_port": spec.remote_port,
        "reverse": spec.reverse,
    }
    for attempt in (1, 2, 3):
        await _ensure_owner(layout, target, machine)
        try:
            reply = await request(paths, payload)
            break
        except ConnectionFailed as exc:
            # The owner may be letting go just now (its last forward was removed): once it
            # has, start anew.
            if attempt == 3 or type(exc) is not ConnectionFailed:
                raise
            await asyncio.sleep(0.2 * attempt)
    state = read_state(paths)
    return PortForwardInfo(
        local_port=spec.local_port,
        remote_host=spec.remote_host,
        remote_port=spec.remote_port,
        state=reply.get("state", "active"),
        machine=machine,
        owner_pid=state.get("pid"),
        reverse=spec.reverse,
        detail=None if reply.get("added") else "already forwarded (nothing changed)",
    )


async def remove_port(
    layout: Layout, alias: str, machine: str, port: int, reverse: bool = False
) -> None:
    paths = forward_paths(layout, alias)
    what = f"remote port {port} (reverse)" if reverse else f"local port {port}"
    if not owner_alive(paths):
        raise NotFound(f"no forward of {what} is running on {machine}")
    reply = await request(paths, {"op": "remove", "local_port": port, "reverse": reverse})
    if not reply.get("removed"):
        raise NotFound(f"{what} is not forwarded on {machine}", hint="see what is: orch ports list")


async def stop_forwards(layout: Layout, alias: str) -> bool:
    """Ask the owner to stop every forward of this machine (used by `orch down`)."""
    paths = forward_paths(layout, alias)
    if not owner_alive(paths):
        return False
    await request(paths, {"op": "shutdown"})
    return True
