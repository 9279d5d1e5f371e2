"""The agent's memory trim (issue 20): freed memory goes back to the system."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sidecar.agent import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_returns_freed_memory_under_the_agents_allocator() -> None:
    # In a fresh interpreter started as the agent is (PYTHONMALLOC=malloc): many small
    # objects, most freed with a few survivors between them (so the heap cannot shrink from
    # its top), then trim: RSS must drop by most of what was freed.
    code = textwrap.dedent(
        """
        from sidecar.agent import memory
        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS"):
                    return int(line.split()[1])
        blobs = [str(i) * 20 for i in range(400_000)]
        keep = blobs[::5000]
        del blobs
        before = rss()
        assert memory.trim()
        print(before, rss(), len(keep))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONMALLOC": "malloc", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    before, after = int(out[0]), int(out[1])
    assert before - after > 10_000, (before, after)  # kB: at least 10 MB given back


def test_trim_is_safe_to_repeat() -> None:
    assert memory.trim() in (True, False)
    assert memory.trim() == memory.trim()
