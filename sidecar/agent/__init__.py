"""The local orch agent: one per-user process that owns every long-lived thing on this computer
(syncs, port forwards, the watched status, one SSH connection per machine), and the thin,
standard-library client the CLI and the language server use to reach it (`client.py`)."""
