"""The `orch` command: argument parsing and output only; every operation is the Orchestrator's."""
