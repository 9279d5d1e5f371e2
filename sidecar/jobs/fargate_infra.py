"""`orch backend init|destroy NAME` for a fargate backend: what it needs in AWS, made or removed.

`init` is idempotent: each resource is looked up first, created (tagged `orch:project`,
`orch:backend`) when absent, and its settings re-applied (policies, retention, encryption,
lifecycle), so running it again repairs drift and creates nothing twice. It makes the ECS
cluster (FARGATE and FARGATE_SPOT providers), the log group with retention, the execution
role and a least-privilege task role, an encrypted private S3 bucket with a lifecycle rule,
and the queue with its dead-letter queue. Each item says what it costs at rest.
`destroy` removes the same things (refusing while tasks run); what is absent is skipped.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from remote_config import fargate as fg
from sidecar.errors import Conflict, NotFound

if TYPE_CHECKING:
    from sidecar.jobs.fargate import FargateJobs

# CloudWatch Logs accepts only these retention periods (days).
_RETENTIONS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)
CODE_EXPIRY_DAYS = 30
OUTPUTS_EXPIRY_DAYS = 90


class InfraItem(BaseModel):
    resource: str
    name: str
    action: str  # created, exists (updated), removed, absent
    cost_at_rest: str


class InfraResult(BaseModel):
    backend: str
    region: str
    items: list[InfraItem]


def retention(days: int) -> int:
    """The smallest retention CloudWatch offers that keeps logs at least `days`."""
    return next((r for r in _RETENTIONS if r >= days), _RETENTIONS[-1])


async def init(jobs: FargateJobs) -> InfraResult:
    aws, n, cfg = jobs.aws, jobs.names, jobs.cfg
    account = await aws.account()
    items: list[InfraItem] = []
    tag_map = {t["key"]: t["value"] for t in fg.tags(n)}

    # ECS cluster
    found = await aws.call("ecs", "describe_clusters", clusters=[n.cluster])
    active = [c for c in found.get("clusters", []) if c.get("status") == "ACTIVE"]
    if not active:
        await aws.call(
            "ecs",
            "create_cluster",
            clusterName=n.cluster,
            capacityProviders=["FARGATE", "FARGATE_SPOT"],
            defaultCapacityProviderStrategy=[
                {"capacityProvider": cfg.capacity_provider, "weight": 1}
            ],
            tags=fg.tags(n),
        )
    items.append(
        InfraItem(
            resource="ECS cluster",
            name=n.cluster,
            action="exists" if active else "created",
            cost_at_rest="$0 (Fargate bills running tasks only)",
        )
    )

    # Log group with retention
    groups = await aws.call("logs", "describe_log_groups", logGroupNamePrefix=n.log_group)
    exists = any(g["logGroupName"] == n.log_group for g in groups.get("logGroups", []))
    if not exists:
        await aws.call("logs", "create_log_group", logGroupName=n.log_group, tags=tag_map)
    days = retention(cfg.log_retention_days)
    await aws.call("logs", "put_retention_policy", logGroupName=n.log_group, retentionInDays=days)
    items.append(
        InfraItem(
            resource="log group",
            name=f"{n.log_group} (kept {days} days)",
            action="exists" if exists else "created",
            cost_at_rest="$0.03 per GB-month of logs kept",
        )
    )

    # Queue + dead-letter queue (SQS create_queue is idempotent for equal attributes)
    sse = {"SqsManagedSseEnabled": "true"}
    dlq_url = (
        await aws.call(
            "sqs",
            "create_queue",
            QueueName=n.dead_letter_queue,
            Attributes={**sse, "MessageRetentionPeriod": "1209600"},
            tags=tag_map,
        )
    )["QueueUrl"]
    dlq_arn = (
        await aws.call("sqs", "get_queue_attributes", QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    )["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": cfg.max_attempts})
    queue_url = (
        await aws.call(
            "sqs",
            "create_queue",
            QueueName=n.queue,
            Attributes={**sse, "VisibilityTimeout": "300"},
            tags=tag_map,
        )
    )["QueueUrl"]
    await aws.call(
        "sqs", "set_queue_attributes", QueueUrl=queue_url, Attributes={"RedrivePolicy": redrive}
    )
    queue_arn = (
        await aws.call(
            "sqs", "get_queue_attributes", QueueUrl=queue_url, AttributeNames=["QueueArn"]
        )
    )["Attributes"]["QueueArn"]
    for name in (n.queue, n.dead_letter_queue):
        items.append(
            InfraItem(
                resource="SQS queue",
                name=name,
                action="ensured",
                cost_at_rest="$0 ($0.40 per million requests)",
            )
        )

    # Roles: ECS's execution role, and the job's own least-privilege task role
    role_tags = [{"Key": k, "Value": v} for k, v in tag_map.items()]
    trust = json.dumps(fg.trust_policy(account))
    for role, policy in (
        (n.execution_role, fg.execution_policy(n, cfg, account)),
        (
            n.task_role,
            fg.task_policy(queue_arn, fg.cluster_tasks_arn(cfg.region, account, n.cluster)),
        ),
    ):
        created = False
        try:
            await aws.call("iam", "get_role", RoleName=role)
        except NotFound:
            await aws.call(
                "iam",
                "create_role",
                RoleName=role,
                AssumeRolePolicyDocument=trust,
                Tags=role_tags,
                Description=f"orch {n.project}/{n.backend}",
            )
            created = True
        await aws.call(
            "iam",
            "put_role_policy",
            RoleName=role,
            PolicyName="orch",
            PolicyDocument=json.dumps(policy),
        )
        items.append(
            InfraItem(
                resource="IAM role",
                name=role,
                action="created" if created else "exists",
                cost_at_rest="$0",
            )
        )

    # S3 bucket: private, encrypted, old code and outputs expire
    bucket = await jobs.bucket()
    created = False
    try:
        await aws.call("s3", "head_bucket", Bucket=bucket)
    except NotFound:
        args: dict[str, Any] = {"Bucket": bucket}
        if cfg.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": cfg.region}
        await aws.call("s3", "create_bucket", **args)
        created = True
    await aws.call(
        "s3",
        "put_public_access_block",
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    await aws.call(
        "s3",
        "put_bucket_encryption",
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    await aws.call(
        "s3",
        "put_bucket_lifecycle_configuration",
        Bucket=bucket,
        LifecycleConfiguration=lifecycle(),
    )
    await aws.call("s3", "put_bucket_tagging", Bucket=bucket, Tagging={"TagSet": role_tags})
    items.append(
        InfraItem(
            resource="S3 bucket",
            name=bucket,
            action="created" if created else "exists",
            cost_at_rest=f"$0.023 per GB-month stored (code expires after "
            f"{CODE_EXPIRY_DAYS} days, outputs after {OUTPUTS_EXPIRY_DAYS})",
        )
    )
    return InfraResult(backend=n.backend, region=cfg.region, items=items)


def lifecycle() -> dict[str, Any]:
    return {
        "Rules": [
            {
                "ID": "orch-code",
                "Status": "Enabled",
                "Filter": {"Prefix": "code/"},
                "Expiration": {"Days": CODE_EXPIRY_DAYS},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            },
            {
                "ID": "orch-outputs",
                "Status": "Enabled",
                "Filter": {"Prefix": "outputs/"},
                "Expiration": {"Days": OUTPUTS_EXPIRY_DAYS},
            },
        ]
    }


async def destroy(jobs: FargateJobs) -> InfraResult:
    """Remove what init made (the bucket with its code and outputs); refuses while tasks run."""
    aws, n, cfg = jobs.aws, jobs.names, jobs.cfg
    items: list[InfraItem] = []

    def item(resource: str, name: str, removed: bool) -> None:
        items.append(
            InfraItem(
                resource=resource,
                name=name,
                action="removed" if removed else "absent",
                cost_at_rest="$0",
            )
        )

    found = await aws.call("ecs", "describe_clusters", clusters=[n.cluster])
    active = [c for c in found.get("clusters", []) if c.get("status") == "ACTIVE"]
    if active:
        running = await aws.call("ecs", "list_tasks", cluster=n.cluster, desiredStatus="RUNNING")
        if running.get("taskArns"):
            raise Conflict(
                f"{len(running['taskArns'])} task(s) still run in cluster {n.cluster}",
                hint="stop them first (orch stop NAME), then destroy",
            )
        await aws.call("ecs", "delete_cluster", cluster=n.cluster)
    item("ECS cluster", n.cluster, bool(active))

    removed = True
    try:
        await aws.call("logs", "delete_log_group", logGroupName=n.log_group)
    except NotFound:
        removed = False
    item("log group", n.log_group, removed)

    for queue in (n.queue, n.dead_letter_queue):
        try:
            url = (await aws.call("sqs", "get_queue_url", QueueName=queue))["QueueUrl"]
        except NotFound:
            item("SQS queue", queue, False)
            continue
        await aws.call("sqs", "delete_queue", QueueUrl=url)
        item("SQS queue", queue, True)

    for role in (n.execution_role, n.task_role):
        try:
            await aws.call("iam", "get_role", RoleName=role)
        except NotFound:
            item("IAM role", role, False)
            continue
        with suppress(NotFound):
            await aws.call("iam", "delete_role_policy", RoleName=role, PolicyName="orch")
        await aws.call("iam", "delete_role", RoleName=role)
        item("IAM role", role, True)

    bucket = cfg.bucket or n.bucket(await aws.account())
    try:
        await aws.call("s3", "head_bucket", Bucket=bucket)
    except NotFound:
        item("S3 bucket", bucket, False)
    else:
        while True:
            listed = await aws.call("s3", "list_objects_v2", Bucket=bucket)
            keys = [{"Key": o["Key"]} for o in listed.get("Contents", [])]
            if not keys:
                break
            await aws.call(
                "s3", "delete_objects", Bucket=bucket, Delete={"Objects": keys, "Quiet": True}
            )
        await aws.call("s3", "delete_bucket", Bucket=bucket)
        item("S3 bucket", bucket, True)
    return InfraResult(backend=n.backend, region=cfg.region, items=items)
