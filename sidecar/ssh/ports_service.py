"""`orch ports list|add|remove`: the client side of the forwarder, with truthful state.

Adds and removes go to the machine's one forward owner (started in the background when no
process owns the forwards yet, see `forwarder.py`). Listing reads the owner's state file and
checks it against the system: a forward counts as active only while its owner holds the lock
and the owner's process really listens on the port; otherwise it is shown as dead. Forwards
declared in orch.toml that are not running are listed as "stopped".
"""

from __future__ import annotations

from remote_config.ssh_config import LocalForwardSpec
from sidecar.errors import ConnectionFailed, NotFound
from sidecar.layout import Layout
from sidecar.machines.base import SSHTarget
from sidecar.ssh.forwarder import owner_alive, read_state, request, spawn_owner
from sidecar.ssh.forwards import PortForwardInfo, PortsResult, forward_paths
from sidecar.ssh.local_ports import port_holders


def list_ports(
    layout: Layout, alias: str, machine: str, configured: tuple[LocalForwardSpec, ...] = ()
) -> PortsResult:
    paths = forward_paths(layout, alias)
    state = read_state(paths)
    alive = owner_alive(paths)
    pid = state.get("pid") if alive else None
    out: list[PortForwardInfo] = []
    config_ports = {c.local_port for c in configured}
    for raw in state.get("forwards", []):
        port = int(raw["local_port"])
        info = PortForwardInfo(
            local_port=port,
            remote_host=str(raw.get("remote_host", "127.0.0.1")),
            remote_port=int(raw["remote_port"]),
            state=raw.get("state", "active") if alive else "dead",
            machine=machine,
            owner_pid=pid,
            from_config=port in config_ports,
        )
        if not alive:
            info.detail = f"the forwarder (pid {state.get('pid')}) is gone"
        elif pid is not None and pid not in {h.pid for h in port_holders(port)}:
            info.state, info.detail = "dead", f"pid {pid} does not listen on port {port}"
        elif info.state == "reconnecting" and state.get("error"):
            info.detail = str(state["error"])
        out.append(info)
    running = {p.local_port for p in out}
    for spec in configured:
        if spec.local_port not in running:
            out.append(
                PortForwardInfo(
                    local_port=spec.local_port,
                    remote_host=spec.remote_host,
                    remote_port=spec.remote_port,
                    state="stopped",
                    machine=machine,
                    from_config=True,
                )
            )
    return PortsResult(ports=sorted(out, key=lambda p: p.local_port))


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
    }
    for attempt in (1, 2):
        await spawn_owner(layout, target, machine)
        try:
            reply = await request(paths, payload)
            break
        except ConnectionFailed as exc:
            # The owner may have exited just now (its last forward was removed): start anew.
            if attempt == 2 or type(exc) is not ConnectionFailed:
                raise
    state = read_state(paths)
    return PortForwardInfo(
        local_port=spec.local_port,
        remote_host=spec.remote_host,
        remote_port=spec.remote_port,
        state=reply.get("state", "active"),
        machine=machine,
        owner_pid=state.get("pid"),
        detail=None if reply.get("added") else "already forwarded (nothing changed)",
    )


async def remove_port(layout: Layout, alias: str, machine: str, local_port: int) -> None:
    paths = forward_paths(layout, alias)
    if not owner_alive(paths):
        raise NotFound(f"no forward of local port {local_port} is running on {machine}")
    reply = await request(paths, {"op": "remove", "local_port": local_port})
    if not reply.get("removed"):
        raise NotFound(
            f"local port {local_port} is not forwarded on {machine}",
            hint="see what is: orch ports list",
        )


async def stop_forwards(layout: Layout, alias: str) -> bool:
    """Ask the owner to stop every forward of this machine (used by `orch down`)."""
    paths = forward_paths(layout, alias)
    if not owner_alive(paths):
        return False
    await request(paths, {"op": "shutdown"})
    return True
