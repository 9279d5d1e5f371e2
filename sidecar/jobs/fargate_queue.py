"""Queue mode on a fargate backend: `orch queue NAME --on BACKEND --file F | --each ... -- CMD`.

Submitting ships the synced snapshot (as a job does), registers the worker task definition
(`remote_config/fargate_worker.py` with the code URL), sends the items to the backend's SQS
queue, creates or updates the ECS service of workers with the brief's desired count, and
registers Application Auto Scaling target tracking on backlog per task (min_tasks ..
max_tasks), so AWS scales the workers while the laptop sleeps. Status reads the queue, the
dead-letter queue and the service.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from remote_config import fargate as fg
from remote_config import fargate_boot as boot
from remote_config import fargate_worker as fw
from sidecar.errors import NotFound, OrchError

if TYPE_CHECKING:
    from sidecar.jobs.fargate import FargateJobs


class QueueStatus(BaseModel):
    backend: str
    queue: str
    depth: int = 0
    in_flight: int = 0
    done: int = 0
    failed: int = 0
    submitted: int = 0
    tasks_running: int = 0
    tasks_desired: int = 0


async def _attrs(jobs: FargateJobs, url: str) -> dict[str, str]:
    out = await jobs.aws.call(
        "sqs",
        "get_queue_attributes",
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return dict(out.get("Attributes", {}))


async def _url(jobs: FargateJobs, name: str) -> str:
    try:
        return str((await jobs.aws.call("sqs", "get_queue_url", QueueName=name))["QueueUrl"])
    except NotFound:
        raise NotFound(
            f"backend {jobs.name!r} has no queue {name!r}",
            hint=f"create it with: orch backend init {jobs.name}",
        ) from None


async def submit(
    jobs: FargateJobs, name: str, commands: Sequence[str], code_key: str
) -> QueueStatus:
    from sidecar.jobs.fargate_code import digest_of_key

    if not commands:
        raise OrchError("no items to queue", hint="give --file with one command per line")
    n, cfg, aws = jobs.names, jobs.cfg, jobs.aws
    url = await _url(jobs, n.queue)
    execution, task = await jobs._role_arns()
    definition = fg.task_definition(n, cfg, execution, task, boot.container_command())
    definition["family"] = f"{n.family}-worker"
    container = definition["containerDefinitions"][0]
    env = {e["name"]: e["value"] for e in container["environment"]}
    env.update(fw.worker_environment(cfg.region, url))
    env["ORCH_CODE_URL"] = await jobs._presign("get_object", code_key)
    env["ORCH_CODE_SHA256"] = digest_of_key(code_key)
    container["environment"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    registered = await aws.call("ecs", "register_task_definition", **definition)
    td_arn = registered["taskDefinition"]["taskDefinitionArn"]

    bodies = [fw.message_body(name, i, cmd) for i, cmd in enumerate(commands, 1)]
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
        ]
        out = await aws.call("sqs", "send_message_batch", QueueUrl=url, Entries=entries)
        if out.get("Failed"):
            raise OrchError(
                f"SQS refused {len(out['Failed'])} item(s): {out['Failed'][0].get('Message')}",
                hint=f"items before #{start + 1} were queued; queue the rest again",
            )
    total = int(jobs.store.cache_get("queue:submitted") or 0) + len(bodies)
    jobs.store.cache_put("queue:submitted", str(total))

    depth = int((await _attrs(jobs, url)).get("ApproximateNumberOfMessages", len(bodies)))
    desired = fg.desired_tasks(depth, cfg.messages_per_task, cfg.min_tasks, cfg.max_tasks)
    await _ensure_service(jobs, td_arn, desired)
    await aws.call(
        "application-autoscaling", "register_scalable_target", **fg.scalable_target(n, cfg)
    )
    await aws.call("application-autoscaling", "put_scaling_policy", **fg.scaling_policy(n, cfg))
    return await status(jobs)


async def _ensure_service(jobs: FargateJobs, td_arn: str, desired: int) -> None:
    n, cfg, aws = jobs.names, jobs.cfg, jobs.aws
    found = await aws.call("ecs", "describe_services", cluster=n.cluster, services=[n.service])
    active = [s for s in found.get("services", []) if s.get("status") == "ACTIVE"]
    if active:
        await aws.call(
            "ecs",
            "update_service",
            cluster=n.cluster,
            service=n.service,
            taskDefinition=td_arn,
            desiredCount=max(desired, int(active[0].get("desiredCount", 0))),
        )
        return
    await aws.call(
        "ecs",
        "create_service",
        cluster=n.cluster,
        serviceName=n.service,
        taskDefinition=td_arn,
        desiredCount=desired,
        capacityProviderStrategy=[{"capacityProvider": cfg.capacity_provider, "weight": 1}],
        networkConfiguration=fg.network_configuration(cfg),
        tags=fg.tags(n),
        propagateTags="SERVICE",
    )


async def status(jobs: FargateJobs) -> QueueStatus:
    n, aws = jobs.names, jobs.aws
    main = await _attrs(jobs, await _url(jobs, n.queue))
    dead = await _attrs(jobs, await _url(jobs, n.dead_letter_queue))
    found = await aws.call("ecs", "describe_services", cluster=n.cluster, services=[n.service])
    svc: dict[str, Any] = next(
        (s for s in found.get("services", []) if s.get("status") == "ACTIVE"), {}
    )
    depth = int(main.get("ApproximateNumberOfMessages", 0))
    in_flight = int(main.get("ApproximateNumberOfMessagesNotVisible", 0))
    failed = int(dead.get("ApproximateNumberOfMessages", 0)) + int(
        dead.get("ApproximateNumberOfMessagesNotVisible", 0)  # someone is reading them
    )
    submitted = int(jobs.store.cache_get("queue:submitted") or 0)
    return QueueStatus(
        backend=jobs.name,
        queue=n.queue,
        depth=depth,
        in_flight=in_flight,
        failed=failed,
        submitted=submitted,
        done=max(0, submitted - depth - in_flight - failed),
        tasks_running=int(svc.get("runningCount", 0)),
        tasks_desired=int(svc.get("desiredCount", 0)),
    )


def dumps(value: QueueStatus) -> str:
    return json.dumps(value.model_dump())
