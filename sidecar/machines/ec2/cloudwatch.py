"""Job logs in CloudWatch Logs for EC2 machines with `cloudwatch_logs = true`: the log group
(created by `orch up`, tagged, with its retention), the per-job shipper set-up the job's
start script runs (`remote_config/ec2_logs.py`), and reading a job's log back from CloudWatch
when the machine is gone (`orch logs NAME` after a terminate).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from remote_config import ec2_logs
from remote_config.ec2 import project_tags
from sidecar.errors import CloudError
from sidecar.machines.base import Progress

if TYPE_CHECKING:
    from sidecar.machines.ec2.provider import EC2Provider

_SHIPPER = Path(__file__).with_name("log_shipper.py")


def log_group(provider: EC2Provider) -> str:
    return provider.spec.log_group or ec2_logs.default_log_group(provider.project)


def shipper() -> tuple[str, str]:
    """(version, text) of the shipper copied to the machine."""
    text = _SHIPPER.read_text()
    return hashlib.sha256(text.encode()).hexdigest()[:16], text


def job_setup(provider: EC2Provider, job: str) -> str:
    spec = provider.spec
    if not spec.cloudwatch_logs:
        return ""
    config = ec2_logs.shipper_config(
        region=spec.region,
        group=log_group(provider),
        machine=provider.name,
        job=job,
        metadata_url=spec.metadata_url,
        endpoint=spec.logs_endpoint_url,
    )
    version, text = shipper()
    return ec2_logs.install_script(version, text, config)


async def ensure_log_group(provider: EC2Provider, say: Progress) -> str:
    """The machine's log group, created once (tagged like the instance) with its retention."""
    group = log_group(provider)
    tags = project_tags(provider.project, provider.name, await provider.owner())
    try:
        await provider.aws.call("logs", "create_log_group", logGroupName=group, tags=tags)
        say(f"created log group {group}")
    except CloudError as exc:
        if exc.code != "ResourceAlreadyExistsException":
            raise
    await provider.aws.call(
        "logs",
        "put_retention_policy",
        logGroupName=group,
        retentionInDays=provider.spec.log_retention_days,
    )
    return group


async def archived_logs(provider: EC2Provider, job: str, tail: int | None) -> str | None:
    """The job's latest run from CloudWatch (None: no stream for that job)."""
    group = log_group(provider)
    prefix = ec2_logs.stream_prefix(provider.name, job)
    try:
        found = await provider.aws.call(
            "logs", "describe_log_streams", logGroupName=group, logStreamNamePrefix=prefix
        )
    except CloudError as exc:
        if exc.code == "ResourceNotFoundException":
            return None
        raise
    stream = ec2_logs.latest_stream([s["logStreamName"] for s in found.get("logStreams", [])])
    if stream is None:
        return None
    events: list[dict[str, object]] = []
    token: str | None = None
    while True:
        page = await provider.aws.call(
            "logs",
            "get_log_events",
            logGroupName=group,
            logStreamName=stream,
            startFromHead=True,
            **({"nextToken": token} if token else {}),
        )
        events += page.get("events", [])
        if not page.get("events") or page.get("nextForwardToken") == token:
            break
        token = page.get("nextForwardToken")
    return ec2_logs.join_events(events, tail)
