"""Pure renderers for OpenSSH: the Host blocks of orch's managed ssh config and ssh argv.

Every option carries a comment saying why it is there. Values are quoted for ssh_config;
a value that cannot be represented (a double quote or newline) is refused, never mangled.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

HEADER = "# Managed by orch: regenerated on every write, do not edit (edit orch.toml instead).\n"


@dataclass(frozen=True)
class LocalForwardSpec:
    """A forward: this computer's `local_port` to `remote_host:remote_port` on the machine,
    or with `reverse` the machine's `remote_host:remote_port` (where it listens) to this
    computer's 127.0.0.1:`local_port` (OpenSSH's RemoteForward)."""

    local_port: int
    remote_host: str
    remote_port: int
    reverse: bool = False

    @property
    def key(self) -> tuple[bool, int]:
        """What identifies a forward: the port that listens (local, or the machine's)."""
        return (self.reverse, self.remote_port if self.reverse else self.local_port)


@dataclass(frozen=True)
class HostEntry:
    alias: str
    hostname: str
    port: int
    user: str
    identity_file: str
    known_hosts_file: str
    host_key_alias: str
    control_path: str
    control_persist: str = "10m"
    server_alive_interval: int = 15
    server_alive_count_max: int = 4
    compression: bool = False
    forwards: tuple[LocalForwardSpec, ...] = field(default_factory=tuple)
    proxy_command: str | None = None
    proxy_jump: str | None = None


def quote_value(value: str) -> str:
    """Quote a value for ssh_config.

    OpenSSH splits a line into words honouring both '"' and "'" quotes (and a backslash
    before a quote), so a value holding one kind of quote is wrapped in the other; one that
    holds both, a backslash or a line break cannot be written reliably and is refused.
    """
    if any(c in value for c in "\\\n\r\x00") or ('"' in value and "'" in value):
        raise ValueError(f"value cannot be written to an ssh config: {value!r}")
    if '"' in value:
        return f"'{value}'"
    if "'" in value or any(c.isspace() for c in value) or "#" in value:
        return f'"{value}"'
    return value


def render_host(entry: HostEntry) -> str:
    q = quote_value
    lines = [
        f"Host {q(entry.alias)}",
        f"    HostName {q(entry.hostname)}",
        f"    Port {entry.port}",
        f"    User {q(entry.user)}",
        # Only orch's key: never offer every agent key (servers cap auth attempts).
        f"    IdentityFile {q(entry.identity_file)}",
        "    IdentitiesOnly yes",
        # Host keys are pinned by orch; an unknown or changed key is refused, never accepted.
        f"    UserKnownHostsFile {q(entry.known_hosts_file)}",
        "    StrictHostKeyChecking yes",
        # The alias makes the pinned line independent of the port (the local machine's can move).
        f"    HostKeyAlias {q(entry.host_key_alias)}",
        "    CheckHostIP no",
        # One multiplexed master per host: later commands, rsync and VS Code reuse it.
        "    ControlMaster auto",
        f"    ControlPath {q(entry.control_path)}",
        f"    ControlPersist {entry.control_persist}",
        # Notice a dead peer within interval*count seconds instead of hanging.
        f"    ServerAliveInterval {entry.server_alive_interval}",
        f"    ServerAliveCountMax {entry.server_alive_count_max}",
        "    TCPKeepAlive yes",
        "    BatchMode yes",
        f"    Compression {'yes' if entry.compression else 'no'}",
    ]
    if entry.proxy_command:
        # The rest of the line goes to the shell as it is (ssh_config has no quoting here);
        # the model allows one line only. The host key is still checked end to end.
        lines.append(f"    ProxyCommand {entry.proxy_command}")
    elif entry.proxy_jump:
        lines.append(f"    ProxyJump {q(entry.proxy_jump)}")
    for fwd in entry.forwards:
        if fwd.reverse:
            # The machine listens (on its loopback unless sshd's GatewayPorts says otherwise).
            lines.append(
                f"    RemoteForward {fwd.remote_host}:{fwd.remote_port} 127.0.0.1:{fwd.local_port}"
            )
        else:
            lines.append(
                f"    LocalForward 127.0.0.1:{fwd.local_port} {fwd.remote_host}:{fwd.remote_port}"
            )
    return "\n".join(lines) + "\n"


def render_config(entries: list[HostEntry]) -> str:
    blocks = [render_host(e) for e in sorted(entries, key=lambda e: e.alias)]
    return HEADER + "\n" + "\n".join(blocks)


def ssh_argv(
    config_file: str,
    alias: str,
    remote_command: str | None = None,
    *,
    tty: bool = False,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """argv for OpenSSH through the managed config (`-F`, so ~/.ssh/config is not read)."""
    # Forwards belong to orch's forwarder (docs/ssh.md); a shell must not try to bind them too.
    argv = ["ssh", "-F", config_file, "-o", "ClearAllForwardings=yes", *extra]
    if tty:
        argv.append("-tt")  # force a PTY: tmux attach and shells need one
    argv.append(alias)
    if remote_command is not None:
        argv += ["--", remote_command]
    return argv


def expand_proxy_command(template: str, host: str, port: int, user: str) -> list[str]:
    """argv running a ProxyCommand the way OpenSSH does (through the shell), with %h, %p, %r
    and %% expanded; substituted values are shell-quoted, so a host name cannot inject."""
    out: list[str] = []
    values = {"h": shlex.quote(host), "p": str(port), "r": shlex.quote(user), "%": "%"}
    i = 0
    while i < len(template):
        c = template[i]
        if c == "%" and i + 1 < len(template) and template[i + 1] in values:
            out.append(values[template[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return ["/bin/sh", "-c", "exec " + "".join(out)]


def parse_jump(jump: str, default_user: str) -> tuple[str, int, str]:
    """(host, port, user) of a '[user@]host[:port]' jump host ('[v6]:port' allowed)."""
    user, _, rest = jump.rpartition("@")
    host, port = rest, 22
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":"):
            port = int(tail[1:])
    elif rest.count(":") == 1:
        host, _, p = rest.partition(":")
        port = int(p)
    return host, port, user or default_user
