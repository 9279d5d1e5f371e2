"""The sync's rsync never outlives a killed sync process (it would go on writing on the
machine behind the next sync's back)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _state(pid: int) -> str | None:
    """The process's state letter (None: gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and shutil.which("setpriv")),
    reason="the parent-death signal needs Linux and util-linux's setpriv",
)
def test_rsync_child_dies_with_the_sync_process() -> None:
    script = (
        "import subprocess, sys, time\n"
        "from sidecar.sync.remote import _dies_with_us\n"
        "child = subprocess.Popen(_dies_with_us(['sleep', '30']))\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    child = 0
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 5
        while Path(f"/proc/{child}/comm").read_text().strip() != "sleep":  # exec'ed: armed
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.01)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while _state(child) not in (None, "Z"):
            assert time.monotonic() < deadline, "the child outlived its killed parent"
            time.sleep(0.01)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and _state(child) not in (None, "Z"):
            os.kill(child, signal.SIGKILL)  # the test failed: leave nothing running
