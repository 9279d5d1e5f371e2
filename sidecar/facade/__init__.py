"""The Orchestrator facade's areas, one module each, composed by `sidecar.app.Orchestrator`.

`core` holds the state and the lookups every area shares (config, providers, pool, the
per-machine `context`); `machines`, `status`, `ssh`, `sync`, `jobs`, `debug` and `agent`
each add the facade methods of one area on top of it. Only `sidecar.app` imports these:
the faces use `Orchestrator` and services get a `MachineContext` (the import-linter
contracts in pyproject.toml).
"""
