"""SSH: orch's keys and pinned host keys, the managed ssh config, the connection pool and
port forwards."""
