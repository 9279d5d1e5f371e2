"""orch's pure core: the typed `orch.toml` model and renderers of every artifact orch writes.

Nothing in this package performs I/O, starts processes or touches the network; the sidecar
calls these functions and performs what they compute.
"""
