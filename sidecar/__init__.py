"""The orch sidecar: everything that performs I/O (ssh, sync, jobs, machines, debug, profiling),
the Orchestrator facade both front ends call (`app.py`), the language server (`server/`) and
the `orch` command (`cli/`)."""

__version__ = "0.1.0"
