"""Platform interruption notices (an EC2 spot instance's 2-minute warning), the pure part.

A cloud machine can be taken back by its platform with a short notice: EC2 publishes it in
the instance metadata (`/latest/meta-data/spot/instance-action`, read with an IMDSv2 token)
about two minutes before it stops or terminates a spot instance. Whoever on the machine sees
the notice first (the status read, or the idle agent's check with the laptop closed) records
it in `~/.orch/interruptions`, one line per boot: `BOOT_ID SEEN_EPOCH ACTION TIME`. The job
status snapshot prints those lines, so a job running in a boot that got a notice is shown
`interrupted` (not `lost`), during the two minutes and after the machine comes back.

This module renders the check (a python3 one-liner, stdlib only, run through `sh`), parses
its output and the records, and builds the `Interruption` shown in `orch status`. No I/O.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pydantic import BaseModel

RECORDS = ".orch/interruptions"  # relative to the machine's home
DEFAULT_METADATA_URL = "http://169.254.169.254"
KEEP_RECORDS = 20

# Runs on the machine: IMDSv2 token (PUT), then the notice (GET, 404 while there is none);
# records a notice once per boot, then prints the boot id and every record. Never through an
# HTTP proxy (the metadata service is link-local), one second per request at most.
_CHECK = r"""
import json, os, re, sys, time, urllib.request as u
url = sys.argv[1].rstrip("/")
try:
    boot = open("/proc/sys/kernel/random/boot_id").read().strip() or "none"
except OSError:
    boot = "none"
print("@boot", boot)
get = u.build_opener(u.ProxyHandler({})).open
def call(path, method, headers):
    with get(u.Request(url + path, method=method, headers=headers), timeout=1) as answer:
        return answer.read().decode()
try:
    token = call("/latest/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    notice = json.loads(call("/latest/meta-data/spot/instance-action", "GET",
                             {"X-aws-ec2-metadata-token": token}))
except Exception:
    notice = None
path = os.path.join(os.path.expanduser("~"), ".orch", "interruptions")
try:
    lines = [l for l in open(path).read().splitlines() if l.strip()]
except OSError:
    lines = []
if isinstance(notice, dict) and notice.get("action"):
    if not any(l.split()[:1] == [boot] for l in lines):
        word = lambda v: re.sub(r"[^\w:.+-]", "", str(v))[:40] or "-"
        lines = (lines + [" ".join([boot, str(int(time.time())), word(notice["action"]),
                                    word(notice.get("time", "-"))])])[-__KEEP__:]
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = path + ".tmp%d" % os.getpid()
        with open(tmp, "w") as out:
            out.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
for line in lines:
    print("@interruption", line)
"""


class Interruption(BaseModel):
    """A platform notice that the machine is being taken back (an EC2 spot interruption)."""

    action: str  # what the platform does: "stop", "terminate" or "hibernate"
    time: str  # when, as the platform says it (ISO 8601, UTC)
    seen_at: float  # when orch first saw the notice (the machine's epoch seconds)
    boot: str  # the machine's boot the notice belongs to


@dataclass(frozen=True)
class CheckResult:
    boot: str
    records: dict[str, Interruption]  # boot id -> its notice

    @property
    def current(self) -> Interruption | None:
        """The notice for the machine's current boot (the one about to end), if any."""
        return self.records.get(self.boot)


def check_command(metadata_url: str = DEFAULT_METADATA_URL) -> str:
    """sh: check the metadata service for a spot notice, record it, print boot and records
    (prints only the records when python3 is missing)."""
    code = _CHECK.replace("__KEEP__", str(KEEP_RECORDS))
    return (
        "command -v python3 >/dev/null 2>&1 && "
        f"python3 -c {shlex.quote(code)} {shlex.quote(metadata_url)} 2>/dev/null || :"
    )


def parse_record(line: str) -> Interruption | None:
    """One `BOOT SEEN ACTION TIME` record (None for a malformed line)."""
    parts = line.split()
    if len(parts) != 4:
        return None
    try:
        seen = float(parts[1])
    except ValueError:
        return None
    return Interruption(boot=parts[0], seen_at=seen, action=parts[2], time=parts[3])


def parse_check(text: str) -> CheckResult:
    """The output of `check_command`: `@boot ID` and `@interruption RECORD` lines."""
    boot, records = "", {}
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "@boot":
            boot = rest.strip()
        elif tag == "@interruption":
            record = parse_record(rest)
            if record is not None:
                records[record.boot] = record
    return CheckResult(boot, records)


def describe(notice: Interruption) -> str:
    """'spot interruption: AWS will stop the machine at 2026-…Z (2-minute notice)'."""
    verb = {"terminate": "terminate", "hibernate": "hibernate"}.get(notice.action, "stop")
    return f"spot interruption: AWS will {verb} the machine at {notice.time} (2-minute notice)"


def job_detail(notice: Interruption, running: bool) -> str:
    """Why a job is `interrupted`: still running under a notice, or cut off by it."""
    if running:
        return f"{describe(notice)}; the job will be cut off"
    return (
        f"cut off by a spot interruption ({notice.action} at {notice.time}); "
        "run it again with orch restart NAME"
    )


_URL = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(:\d+)?/?$")


def check_metadata_url(value: str) -> str:
    """A metadata service base URL (scheme, host, optional port; nothing else)."""
    if not _URL.match(value):
        raise ValueError("must be a base URL such as 'http://169.254.169.254'")
    return value.rstrip("/")
