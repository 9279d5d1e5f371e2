"""ECS Fargate, the pure part: what orch submits to AWS for a `fargate` backend.

Renders the task definition (awslogs driver, execution and task roles, secrets by ARN), the
run_task request (capacity provider strategy, awsvpc network configuration, the per-job
overrides), the least-privilege IAM policies, the queue-mode scaling policy, and reads a
described task back into a job state. Names of everything orch creates derive from the
project and backend names here, so `init`, `run` and `destroy` agree. No I/O here; the
worker's shell lives in `fargate_boot.py`, prices in `fargate_prices.py`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from remote_config.model import FargateBackend

CONTAINER = "job"
LOG_PREFIX = "orch"
TAG_PROJECT = "orch:project"
TAG_BACKEND = "orch:backend"
TAG_JOB = "orch:job"
ECS_TASKS = "ecs-tasks.amazonaws.com"

# Fargate's valid (cpu units -> memory MiB) sizes: a range and its step.
_SIZES: dict[int, tuple[int, int, int]] = {
    256: (512, 2048, 512),  # 512, 1024, 2048 (1536 is not offered; checked below)
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
    8192: (16384, 61440, 4096),
    16384: (32768, 122880, 8192),
}


def check_size(cpu: int, memory: int) -> str | None:
    """None if Fargate offers `cpu` units with `memory` MiB, else what it offers instead."""
    low, high, step = _SIZES[cpu]
    ok = low <= memory <= high and (memory - low) % step == 0
    if cpu == 256:
        ok = memory in (512, 1024, 2048)
    if ok:
        return None
    offered = "512, 1024 or 2048" if cpu == 256 else f"{low} to {high} in steps of {step}"
    return f"Fargate offers memory {offered} MiB with cpu {cpu} (got {memory})"


@dataclass(frozen=True)
class Names:
    """The names of what a backend uses, derived once from project, backend and config."""

    project: str
    backend: str
    cluster: str
    log_group: str
    family: str
    execution_role: str
    task_role: str
    queue: str
    dead_letter_queue: str
    service: str

    def bucket(self, account: str) -> str:
        return bucket_name(self.project, account)


def names(project: str, backend: str, cfg: FargateBackend) -> Names:
    base = _slug(f"orch-{project}-{backend}")
    return Names(
        project=project,
        backend=backend,
        cluster=cfg.cluster or _slug(f"orch-{project}"),
        log_group=cfg.log_group or f"/orch/{project}",
        family=base,
        execution_role=f"{base}-execution"[:64],
        task_role=f"{base}-task"[:64],
        queue=f"{base}-queue"[:80],
        dead_letter_queue=f"{base}-dlq"[:80],
        service=f"{base}-workers",
    )


def bucket_name(project: str, account: str) -> str:
    """A valid, account-unique S3 bucket name (3-63 lowercase letters, digits and '-')."""
    slug = re.sub(r"[^a-z0-9-]+", "-", project.lower()).strip("-") or "project"
    return f"orch-{slug[: 63 - 6 - len(account) - 1]}-{account}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text)[:255]


def tags(n: Names, job: str | None = None) -> list[dict[str, str]]:
    out = [{"key": TAG_PROJECT, "value": n.project}, {"key": TAG_BACKEND, "value": n.backend}]
    if job:
        out.append({"key": TAG_JOB, "value": job})
    return out


# -- the task definition ---------------------------------------------------------------------
def task_definition(
    n: Names,
    cfg: FargateBackend,
    execution_role_arn: str,
    task_role_arn: str,
    command: list[str],
) -> dict[str, Any]:
    """register_task_definition's arguments: one container, logs through awslogs."""
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": cfg.image,
        "essential": True,
        "command": command,
        # moto's run_task fails without a container memory; AWS accepts it (a hard limit).
        "memory": cfg.memory,
        "environment": [{"name": k, "value": v} for k, v in sorted(cfg.env.items())],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(cfg.secrets.items())],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": n.log_group,
                "awslogs-region": cfg.region,
                "awslogs-stream-prefix": LOG_PREFIX,
            },
        },
    }
    return {
        "family": n.family,
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": str(cfg.cpu),
        "memory": str(cfg.memory),
        "ephemeralStorage": {"sizeInGiB": cfg.ephemeral_storage_gb},
        "runtimePlatform": {
            "cpuArchitecture": cfg.architecture,
            "operatingSystemFamily": "LINUX",
        },
        "executionRoleArn": execution_role_arn,
        "taskRoleArn": task_role_arn,
        "containerDefinitions": [container],
        "tags": tags(n),
    }


def definition_digest(definition: Mapping[str, Any]) -> str:
    """A short digest naming a rendered definition (a changed config registers anew)."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]


def network_configuration(cfg: FargateBackend) -> dict[str, Any]:
    return {
        "awsvpcConfiguration": {
            "subnets": list(cfg.subnets),
            "securityGroups": list(cfg.security_groups),
            "assignPublicIp": "ENABLED" if cfg.assign_public_ip else "DISABLED",
        }
    }


def run_task_request(
    n: Names,
    cfg: FargateBackend,
    task_definition_arn: str,
    job: str,
    env: Mapping[str, str],
) -> dict[str, Any]:
    """run_task's arguments for one job: `env` (the job's variables, its code and output
    URLs) goes in as container overrides."""
    return {
        "cluster": n.cluster,
        "taskDefinition": task_definition_arn,
        "count": 1,
        "capacityProviderStrategy": [{"capacityProvider": cfg.capacity_provider, "weight": 1}],
        "networkConfiguration": network_configuration(cfg),
        "overrides": {
            "containerOverrides": [
                {
                    "name": CONTAINER,
                    "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
                }
            ]
        },
        "startedBy": f"orch/{job}"[:36],
        "tags": tags(n, job),
        "propagateTags": "TASK_DEFINITION",
        "enableExecuteCommand": False,
    }


def log_stream(task_arn: str) -> str:
    """The awslogs stream of a task: `prefix/container/task-id`."""
    return f"{LOG_PREFIX}/{CONTAINER}/{task_arn.rsplit('/', 1)[-1]}"


# -- reading a task back ---------------------------------------------------------------------
@dataclass(frozen=True)
class TaskState:
    state: str  # a JobState: running, succeeded, failed, stopped, interrupted
    exit_code: int | None
    detail: str | None
    started: datetime | None
    ended: datetime | None


_STARTING = {"PROVISIONING", "PENDING", "ACTIVATING"}


def task_state(task: Mapping[str, Any]) -> TaskState:
    """A described ECS task as a job state (lastStatus, stopCode, the container's exit)."""
    last = str(task.get("lastStatus", "PROVISIONING"))
    started = task.get("startedAt") or task.get("createdAt")
    ended = task.get("stoppedAt")
    containers = [c for c in task.get("containers", []) if c.get("name") == CONTAINER]
    exit_code = containers[0].get("exitCode") if containers else None
    reason = task.get("stoppedReason") or (containers[0].get("reason") if containers else None)
    if last != "STOPPED":
        detail = "starting" if last in _STARTING else last.lower()
        return TaskState("running", None, detail, started, None)
    stop_code = task.get("stopCode")
    if stop_code == "SpotInterruption" or (reason and "spot" in str(reason).lower()):
        return TaskState(
            "interrupted", exit_code, reason or "Fargate Spot interruption", started, ended
        )
    if stop_code == "UserInitiated":
        return TaskState("stopped", exit_code, reason, started, ended)
    if exit_code == 0:
        return TaskState("succeeded", 0, None, started, ended)
    return TaskState("failed", exit_code, reason or stop_code, started, ended)


# -- IAM ----------------------------------------------------------------------------------
def trust_policy(account: str) -> dict[str, Any]:
    """Only ECS tasks of this account may assume orch's roles."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ECS_TASKS},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            }
        ],
    }


def log_group_arn(region: str, account: str, group: str) -> str:
    return f"arn:aws:logs:{region}:{account}:log-group:{group}"


def execution_policy(n: Names, cfg: FargateBackend, account: str) -> dict[str, Any]:
    """What ECS itself needs to start a task: pull the image, write its log stream, read the
    declared secrets (and nothing else)."""
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {
            "Effect": "Allow",
            "Action": [
                "ecr:BatchCheckLayerAvailability",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchGetImage",
            ],
            "Resource": f"arn:aws:ecr:{cfg.region}:{account}:repository/*",
        },
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": log_group_arn(cfg.region, account, n.log_group) + ":log-stream:*",
        },
    ]
    ssm = sorted(a for a in cfg.secrets.values() if ":ssm:" in a)
    sm = sorted(a for a in cfg.secrets.values() if ":secretsmanager:" in a)
    if ssm:
        statements.append({"Effect": "Allow", "Action": ["ssm:GetParameters"], "Resource": ssm})
    if sm:
        statements.append(
            {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": sm}
        )
    return {"Version": "2012-10-17", "Statement": statements}


def cluster_tasks_arn(region: str, account: str, cluster: str) -> str:
    return f"arn:aws:ecs:{region}:{account}:task/{cluster}/*"


def task_policy(queue_arn: str, tasks_arn: str) -> dict[str, Any]:
    """What the job's own code may do: a queue worker takes, extends and deletes items of its
    queue, and protects its own task from scale-in while an item runs (the ECS agent calls
    Get/UpdateTaskProtection with the task role; `tasks_arn`: the cluster's tasks). Code and
    outputs move through presigned URLs, so no S3 rights are granted."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"],
                "Resource": tasks_arn,
            },
            {
                "Effect": "Allow",
                "Action": [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ],
                "Resource": queue_arn,
            },
        ],
    }


# -- queue mode: scaling --------------------------------------------------------------------
def desired_tasks(depth: int, per_task: int, min_tasks: int, max_tasks: int) -> int:
    """The brief's formula: min(max(ceil(depth / per_task), min_tasks), max_tasks)."""
    return min(max(math.ceil(depth / per_task), min_tasks), max_tasks)


def scalable_target(n: Names, cfg: FargateBackend) -> dict[str, Any]:
    return {
        "ServiceNamespace": "ecs",
        "ResourceId": f"service/{n.cluster}/{n.service}",
        "ScalableDimension": "ecs:service:DesiredCount",
        "MinCapacity": cfg.min_tasks,
        "MaxCapacity": cfg.max_tasks,
    }


def scaling_policy(n: Names, cfg: FargateBackend) -> dict[str, Any]:
    """Target tracking on backlog per task = visible messages / running tasks, with the target
    `messages_per_task`: AWS then keeps ceil(depth / per_task) tasks, clamped to
    [min_tasks, max_tasks] by the scalable target (the brief's formula). With no task
    running the backlog is the whole depth, so the service scales out from zero."""
    sqs = {"Name": "QueueName", "Value": n.queue}
    ecs = [{"Name": "ClusterName", "Value": n.cluster}, {"Name": "ServiceName", "Value": n.service}]
    return {
        "PolicyName": f"{n.service}-backlog",
        "ServiceNamespace": "ecs",
        "ResourceId": f"service/{n.cluster}/{n.service}",
        "ScalableDimension": "ecs:service:DesiredCount",
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(cfg.messages_per_task),
            "ScaleOutCooldown": 30,
            "ScaleInCooldown": 120,
            "CustomizedMetricSpecification": {
                "Metrics": [
                    {
                        "Id": "depth",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "AWS/SQS",
                                "MetricName": "ApproximateNumberOfMessagesVisible",
                                "Dimensions": [sqs],
                            },
                            "Stat": "Sum",
                        },
                        "ReturnData": False,
                    },
                    {
                        "Id": "tasks",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": "ECS/ContainerInsights",
                                "MetricName": "RunningTaskCount",
                                "Dimensions": ecs,
                            },
                            "Stat": "Average",
                        },
                        "ReturnData": False,
                    },
                    {
                        "Id": "backlog",
                        "Expression": "IF(tasks > 0, depth / tasks, depth)",
                        "Label": "backlog per task",
                        "ReturnData": True,
                    },
                ]
            },
        },
    }
