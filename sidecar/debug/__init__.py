"""Debugging remote Python: shipping debugpy to the machine, starting jobs under it, and the
attach configurations VS Code uses (with path mappings from the synced folder)."""
