"""Job logs to CloudWatch Logs (`[machines.X] cloudwatch_logs = true`), the pure part: the
log group and stream names, the shipper's per-job config (`logship.json`), the sh that
installs the shipper beside a job, and reading a stream back as text. No I/O.

On the machine, the job wrapper starts `~/.orch/logship/orch_log_shipper.py` (stdlib only,
see `sidecar/machines/ec2/log_shipper.py`) when the job's folder holds a `logship.json`; it
follows run.log into the stream `MACHINE/JOB/STARTED` of the machine's log group and exits
after the job. So the logs outlive the instance: `orch logs NAME` reads them from CloudWatch
when the machine is gone.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from remote_config.job_scripts import heredoc

SHIPPER_DIR = ".orch/logship"  # relative to the machine's home
SHIPPER_FILE = "orch_log_shipper.py"


def default_log_group(project: str) -> str:
    return f"/orch/{re.sub(r'[^A-Za-z0-9_./#-]', '-', project)}"


def stream_prefix(machine: str, job: str) -> str:
    return f"{machine}/{job}/"


def shipper_config(
    *,
    region: str,
    group: str,
    machine: str,
    job: str,
    metadata_url: str,
    endpoint: str | None = None,
    interval_s: float = 5.0,
) -> dict[str, Any]:
    """logship.json: where the job's lines go (`{started}` is filled in on the machine from
    the job's start time, so each run gets its own stream)."""
    return {
        "region": region,
        "group": group,
        "stream": stream_prefix(machine, job) + "{started}",
        "metadata_url": metadata_url,
        "endpoint": endpoint,
        "interval_s": interval_s,
    }


def install_script(version: str, shipper_text: str, config: dict[str, Any]) -> str:
    """sh run by the job's start script (with $D the job's folder): install the shipper when
    its version changed, and write the job's logship.json."""
    d = f'"$HOME"/{SHIPPER_DIR}'
    return "\n".join(
        [
            f"mkdir -p {d} && chmod 700 {d} || exit 1",
            f'if [ "$(cat {d}/version 2>/dev/null)" != {shlex.quote(version)} ]; then',
            "  " + heredoc(f"{d}/{SHIPPER_FILE}.tmp", shipper_text).rstrip("\n"),
            f"  mv -f {d}/{SHIPPER_FILE}.tmp {d}/{SHIPPER_FILE}",
            f"  printf %s {shlex.quote(version)} > {d}/version",
            "fi",
            heredoc('"$D/logship.json"', json.dumps(config)).rstrip("\n"),
        ]
    )


def join_events(events: list[dict[str, Any]], tail: int | None = None) -> str:
    """The stream's events as the run.log text they came from (the last `tail` lines)."""
    lines = [str(e.get("message", "")) for e in events]
    if tail is not None:
        lines = lines[-tail:] if tail else []
    return "".join(line + "\n" for line in lines)


def latest_stream(names: list[str]) -> str | None:
    """The newest run's stream (`…/STARTED`, compared as numbers)."""

    def started(name: str) -> int:
        tail = name.rsplit("/", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    return max(names, key=started) if names else None
