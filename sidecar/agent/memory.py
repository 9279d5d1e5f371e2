"""Giving the agent's freed memory back to the system (issue 20: laptop side <= 120 MB RSS).

Measured (docs/performance.md, "The agent's memory"): with Python's own small-object allocator
the agent kept ~14 MB of empty pools after a 20,000-file initial sync (arenas with a few live
objects left stay mapped), 74 MB RSS against 56 MB on a 100-file tree. So the agent runs with
`PYTHONMALLOC=malloc` (set by `agent_client.spawn`) and asks glibc to return free pages with
`malloc_trim(0)` every few seconds (~0.6 ms when idle): 70.0 MB against 74.7 MB in
`bench/footprint.py` (62.0 against 67.0 MB with issue 12's sync). Nothing here changes what
the agent does; where glibc (or ctypes) is absent, `trim` is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_EVERY_S = 5.0

_trim: Callable[[int], int] | None = None
_loaded = False


def trim() -> bool:
    """`malloc_trim(0)`: free pages go back to the system; False where there is no glibc."""
    global _trim, _loaded
    if not _loaded:
        _loaded = True
        try:
            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = None
    if _trim is None:
        return False
    _trim(0)
    return True
