"""`orch run --on BACKEND` on ECS Fargate, against moto's server (ECS, S3, Logs, EC2, STS) with
every task's container command run for real: in a container through a private Docker daemon,
or as a local process where none can run (fargate_docker.py says which and why).

The project is synced to the embedded local machine first: a Fargate job's code is that
machine's snapshot of the synced tree, shipped to S3, never the laptop's unsynced files.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.app import Orchestrator
from sidecar.errors import Conflict, NotFound, UsageError
from tests.helpers import REPO
from tests.integration import fargate_docker
from tests.integration import fargate_world as world

pytestmark = pytest.mark.integration

CLUSTER = "orch-proj"
BUCKET = f"orch-proj-{world.ACCOUNT}"


@pytest.fixture(scope="module")
def moto() -> Iterator[world.Moto]:
    pytest.importorskip("moto.server")
    m = world.start_moto()
    try:
        yield m
    finally:
        m.server.stop()


@pytest.fixture
def aws(moto: world.Moto, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    moto.reset()
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    c = world.clients(moto)
    c["subnet"], c["sg"] = world.network(c["ec2"])
    return c


def _toml(aws: dict[str, Any], **extra: str) -> str:
    lines = [
        '[project]\nname = "proj"\n',
        "[backends.batch]",
        'kind = "fargate"',
        f'subnets = ["{aws["subnet"]}"]',
        f'security_groups = ["{aws["sg"]}"]',
        'capacity_provider = "FARGATE_SPOT"',
        "cpu = 512",
        "memory = 2048",
        'env = { GREETING = "hello" }',
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def _create_backend_resources(aws: dict[str, Any]) -> None:
    """What `orch backend init` makes (cluster, log group, bucket), made here directly."""
    aws["ecs"].create_cluster(clusterName=CLUSTER, capacityProviders=["FARGATE", "FARGATE_SPOT"])
    aws["logs"].create_log_group(logGroupName="/orch/proj")
    aws["s3"].create_bucket(Bucket=BUCKET)


@pytest.fixture
async def orch(
    orch_home: Path, project: Path, aws: dict[str, Any], tmp_path: Path
) -> AsyncIterator[Orchestrator]:
    (project / "orch.toml").write_text(_toml(aws))
    (project / "main.sh").write_text('echo "code v1 $GREETING $WHO"\n')
    _create_backend_resources(aws)
    o = Orchestrator(cwd=project)
    await o.up()
    try:
        yield o
    finally:
        await o.close()
        await o.down()


@pytest.fixture(scope="module")
def tasks_in() -> Iterator[fargate_docker.Runtime]:
    """Containers through a private dockerd where one can run, else local processes."""
    with fargate_docker.runtime() as rt:
        print(f"fargate tasks run as: {rt.runs_as}")
        yield rt


@pytest.fixture
def runner(
    moto: world.Moto, aws: dict[str, Any], tmp_path: Path, tasks_in: fargate_docker.Runtime
) -> Iterator[world.TaskRunner]:
    r = world.TaskRunner(moto, CLUSTER, tmp_path / "tasks", tasks_in)
    try:
        yield r
    finally:
        r.close()


def _cli(project: Path, orch_home: Path, moto: world.Moto, *args: str, timeout: float = 60):
    env = {**moto.env(), "ORCH_HOME": str(orch_home), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli.main", *args],
        cwd=project,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(orch_home.parent), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def _wait_state(orch: Orchestrator, name: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await orch.jobs_info(name)
        if job.state != "running":
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name} still running")


async def test_run_ships_the_synced_snapshot_runs_it_and_fetches_outputs(
    orch: Orchestrator, project: Path, aws: dict[str, Any], runner: world.TaskRunner
) -> None:
    await orch.sync_now()
    (project / "main.sh").write_text('echo "code v2 UNSYNCED"\n')  # never synced
    job = await orch.jobs_run(
        "train",
        "sh main.sh; mkdir -p out; echo weights > out/model.txt",
        {"WHO": "world"},
        on="batch",
        outputs="out",
    )
    assert (job.backend, job.state) == ("fargate", "running")

    # What orch submitted: the task definition, the capacity provider, the network.
    (arn,) = aws["ecs"].list_tasks(cluster=CLUSTER)["taskArns"]
    task = aws["ecs"].describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"][0]
    assert task["capacityProviderName"] == "FARGATE_SPOT"
    td = aws["ecs"].describe_task_definition(taskDefinition=task["taskDefinitionArn"])
    d = td["taskDefinition"]
    assert (d["cpu"], d["memory"], d["networkMode"]) == ("512", "2048", "awsvpc")
    assert d["executionRoleArn"].endswith(":role/orch-proj-batch-execution")
    assert d["taskRoleArn"].endswith(":role/orch-proj-batch-task")
    (c,) = d["containerDefinitions"]
    assert c["logConfiguration"]["logDriver"] == "awslogs"
    assert c["logConfiguration"]["options"]["awslogs-group"] == "/orch/proj"
    assert {"name": "GREETING", "value": "hello"} in c["environment"]
    net = world.moto_task(arn).network_configuration["awsvpcConfiguration"]
    assert net["subnets"] == [aws["subnet"]] and net["securityGroups"] == [aws["sg"]]
    override = {
        e["name"]: e["value"] for e in task["overrides"]["containerOverrides"][0]["environment"]
    }
    assert override["WHO"] == "world" and override["ORCH_OUTPUTS"] == "out"
    assert override["ORCH_CODE_URL"].startswith("http://127.0.0.1")

    assert runner.wait_finished(arn) == 0
    done = await _wait_state(orch, "train")
    assert (done.state, done.exit_code) == ("succeeded", 0)
    assert done.cost_usd is not None and done.cost_usd > 0
    log = await orch.jobs_logs("train")
    assert "code v1 hello world" in log and "UNSYNCED" not in log

    # The archive is content-addressed: a second job of the same snapshot uploads nothing.
    keys = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="code/")["Contents"]]
    assert len(keys) == 1 and keys[0].endswith(".tar.gz")
    head = aws["s3"].head_object(Bucket=BUCKET, Key=keys[0])
    assert head["ServerSideEncryption"] == "AES256"
    body = aws["s3"].get_object(Bucket=BUCKET, Key=keys[0])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tf:
        names = tf.getnames()
    assert "./main.sh" in names and not any(n.startswith("./.orch") for n in names)
    await orch.jobs_run("again", "sh main.sh", on="batch")
    keys2 = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="code/")["Contents"]]
    assert keys2 == keys

    folder = await orch.jobs_fetch("train")
    assert Path(folder, "model.txt").read_text() == "weights\n"
    assert Path(folder) == project / "outputs" / "train"


async def test_cli_logs_follow_status_and_failure(
    orch: Orchestrator,
    project: Path,
    orch_home: Path,
    moto: world.Moto,
    runner: world.TaskRunner,
) -> None:
    await orch.sync_now()
    run = _cli(
        project,
        orch_home,
        moto,
        "run",
        "count",
        "--on",
        "batch",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.3; done; exit 3",
    )
    assert run.returncode == 0, run.stderr
    assert "started count" in run.stdout
    logs = _cli(project, orch_home, moto, "logs", "count", "-f")
    assert logs.returncode == 0, logs.stderr
    assert [ln for ln in logs.stdout.splitlines() if ln.startswith("line")] == [
        "line1",
        "line2",
        "line3",
    ]
    assert "orch: exit 3" in logs.stdout
    status = _cli(project, orch_home, moto, "status")
    assert status.returncode == 0, status.stderr
    row = next(ln for ln in status.stdout.splitlines() if ln.startswith("count"))
    assert "failed (3)" in row and "fargate" in row and "$" in row
    tail = _cli(project, orch_home, moto, "logs", "count", "-n", "1")
    assert tail.stdout.strip() == "orch: exit 3"

    again = _cli(project, orch_home, moto, "restart", "count")  # same command, new task
    assert again.returncode == 0 and "restarted count" in again.stdout, again.stderr
    deadline = time.monotonic() + 30
    while (job := await orch.jobs_info("count")).state == "running":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert (job.state, job.exit_code) == ("failed", 3)
    assert len(list(runner.finished)) == 2
    rm = _cli(project, orch_home, moto, "rm", "count", "--purge")
    assert rm.returncode == 0 and "removed count" in rm.stdout, rm.stderr
    with pytest.raises(NotFound):
        await Orchestrator(cwd=project).jobs_info("count", on="batch")


async def test_logs_follow_shows_lines_while_the_task_still_writes(
    orch: Orchestrator, runner: world.TaskRunner, aws: dict[str, Any]
) -> None:
    """`orch logs -f` (jobs_stream follow) yields each line as the task writes it: the task
    prints, then waits for a gate the test opens only after the first line came through the
    follow; so the follow must have read it from CloudWatch while the task ran."""
    from sidecar.jobs.fargate_logs import Pacing

    await orch.sync_now()
    gate = runner.runtime.shared / "gate"  # seen by the task, also in a container
    orch.jobs(None, "batch").log_pacing = Pacing(0.05, 0.2)  # type: ignore[attr-defined]
    await orch.jobs_run(
        "live",
        f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second",
        on="batch",
    )
    seen: list[str] = []
    running_at_first: bool | None = None
    async with asyncio.timeout(30):
        async for chunk in orch.jobs_stream("live", follow=True):
            seen += chunk.splitlines()
            if "first" in seen and running_at_first is None:
                running_at_first = (await orch.jobs_info("live")).state == "running"
                (arn,) = aws["ecs"].list_tasks(cluster=CLUSTER)["taskArns"]
                assert arn in runner.runs and arn not in runner.finished
                gate.touch()
    assert running_at_first is True
    assert seen.index("first") < seen.index("second")
    assert seen[-1] == "orch: exit 0"
    assert (await orch.jobs_info("live")).state == "succeeded"


async def test_a_jobs_stdout_and_stderr_reach_the_log_in_the_order_written(
    orch: Orchestrator, runner: world.TaskRunner, aws: dict[str, Any]
) -> None:
    """A container's stdout and stderr are copied separately (Docker here, ECS's awslogs
    driver in AWS), so without the bootstrap's `exec 2>&1` lines written alternately to both
    reach CloudWatch out of order, and `orch: exit N` can land before the job's last line."""
    await orch.sync_now()
    await orch.jobs_run(
        "mixed", "for i in 1 2 3 4 5 6; do echo out$i; echo err$i >&2; done", on="batch"
    )
    (arn,) = aws["ecs"].list_tasks(cluster=CLUSTER)["taskArns"]
    await asyncio.to_thread(runner.wait_finished, arn)
    text = await orch.jobs_logs("mixed")
    want = [f"{s}{i}" for i in range(1, 7) for s in ("out", "err")] + ["orch: exit 0"]
    assert [ln for ln in text.splitlines() if ln] == want, runner.runtime.runs_as


async def test_stop_sends_sigterm_and_records_it(
    orch: Orchestrator, project: Path, orch_home: Path, moto: world.Moto, runner: world.TaskRunner
) -> None:
    await orch.sync_now()
    await orch.jobs_run("slow", "echo ready; sleep 60", on="batch")
    deadline = time.monotonic() + 20
    while "ready" not in await orch.jobs_logs("slow"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    with pytest.raises(Conflict, match="already running"):
        await orch.jobs_run("slow", "true", on="batch")
    stop = _cli(project, orch_home, moto, "stop", "slow")
    assert stop.returncode == 0, stop.stderr
    assert "stopped slow (exit status 143)" in stop.stdout
    job = await orch.jobs_info("slow")
    assert (job.state, job.exit_code) == ("stopped", 143)


async def test_spot_interruption_shows_as_interrupted(
    orch: Orchestrator, runner: world.TaskRunner, aws: dict[str, Any]
) -> None:
    await orch.sync_now()
    await orch.jobs_run("spot", "echo up; sleep 60", on="batch")
    (arn,) = aws["ecs"].list_tasks(cluster=CLUSTER)["taskArns"]
    deadline = time.monotonic() + 20
    while arn not in runner.runs:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    runner.interrupt(arn)
    runner.wait_finished(arn)
    job = await _wait_state(orch, "spot")
    assert job.state == "interrupted"
    assert "Spot" in (job.detail or "")
    status = await orch.status()
    assert any(j.name == "spot" and j.state == "interrupted" for j in status.jobs)


async def test_error_paths_are_one_clear_error(
    orch: Orchestrator, project: Path, aws: dict[str, Any], runner: world.TaskRunner
) -> None:
    from sidecar.sync.snapshot import NotSynced

    with pytest.raises(NotSynced):  # never synced: no snapshot, so nothing is shipped
        await orch.jobs_run("x", "true", on="batch")
    await orch.sync_now()
    with pytest.raises(NotFound, match="unknown job backend 'nope'"):
        await orch.jobs_run("x", "true", on="nope")
    with pytest.raises(UsageError, match="always run from a snapshot"):
        await orch.jobs_run("x", "true", on="batch", snapshot=False)
    with pytest.raises(UsageError, match="--outputs is for jobs on a backend"):
        await orch.jobs_run("x", "true", outputs="out")
    with pytest.raises(UsageError, match="inside the project"):
        await orch.jobs_run("x", "true", on="batch", outputs="../up")
    (project / "orch.toml").write_text(_toml(aws, cluster='"no-such-cluster"'))
    fresh = Orchestrator(cwd=project)
    with pytest.raises(NotFound, match="ECS cluster does not exist") as err:
        await fresh.jobs_run("x", "true", on="batch")
    assert err.value.hint and "orch backend init batch" in err.value.hint
    (project / "orch.toml").write_text(_toml(aws))
    with pytest.raises(NotFound, match="no job named 'ghost'"):
        await orch.jobs_stop("ghost", on="batch")
    # No bucket: the code cannot be shipped; the error says what to create.
    for obj in aws["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", []):
        aws["s3"].delete_object(Bucket=BUCKET, Key=obj["Key"])
    aws["s3"].delete_bucket(Bucket=BUCKET)
    fresh = Orchestrator(cwd=project)
    with pytest.raises(NotFound, match="bucket") as err:
        await fresh.jobs_run("x", "true", on="batch")
    assert err.value.hint and "orch backend init batch" in err.value.hint
    # No network: refused before any AWS call.
    (project / "orch.toml").write_text(_toml(aws).replace(f'"{aws["subnet"]}"', ""))
    fresh = Orchestrator(cwd=project)
    with pytest.raises(UsageError, match="no subnets"):
        await fresh.jobs_run("x", "true", on="batch")
    await fresh.close()


def test_backend_init_is_idempotent_tagged_and_destroy_removes_it(
    orch_home: Path, project: Path, aws: dict[str, Any], moto: world.Moto
) -> None:
    (project / "orch.toml").write_text(_toml(aws, max_attempts="4", log_retention_days="20"))
    first = _cli(project, orch_home, moto, "backend", "init", "batch")
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout and "COST AT REST" in first.stdout
    again = _cli(project, orch_home, moto, "backend", "init", "batch", "--json")
    assert again.returncode == 0, again.stderr
    import json

    actions = {
        i["resource"] + " " + i["name"]: i["action"] for i in json.loads(again.stdout)["items"]
    }
    assert "created" not in actions.values()  # the second run makes nothing new

    cluster = aws["ecs"].describe_clusters(clusters=[CLUSTER], include=["TAGS"])["clusters"][0]
    assert set(cluster["capacityProviders"]) == {"FARGATE", "FARGATE_SPOT"}
    assert {"key": "orch:backend", "value": "batch"} in cluster["tags"]
    (group,) = aws["logs"].describe_log_groups(logGroupNamePrefix="/orch/proj")["logGroups"]
    assert group["retentionInDays"] == 30  # 20 days rounded up to what CloudWatch offers
    role = aws["iam"].get_role(RoleName="orch-proj-batch-task")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"]["Service"] == "ecs-tasks.amazonaws.com"
    policy = aws["iam"].get_role_policy(RoleName="orch-proj-batch-task", PolicyName="orch")
    doc = policy["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    protect, queue = doc["Statement"]  # least privilege: its queue, its cluster's tasks
    assert all(a.startswith("sqs:") for a in queue["Action"])
    assert protect["Action"] == ["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"]
    assert protect["Resource"] == f"arn:aws:ecs:us-east-1:{world.ACCOUNT}:task/{CLUSTER}/*"
    enc = aws["s3"].get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]
    assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    rules = aws["s3"].get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert {r["ID"] for r in rules} == {"orch-code", "orch-outputs"}
    block = aws["s3"].get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    url = aws["sqs"].get_queue_url(QueueName="orch-proj-batch-queue")["QueueUrl"]
    attrs = aws["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == 4
    assert redrive["deadLetterTargetArn"].endswith(":orch-proj-batch-dlq")

    refused = _cli(project, orch_home, moto, "backend", "destroy", "batch")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    gone = _cli(project, orch_home, moto, "backend", "destroy", "batch", "--yes", "--json")
    assert gone.returncode == 0, gone.stderr
    assert {i["action"] for i in json.loads(gone.stdout)["items"]} == {"removed"}
    assert aws["s3"].list_buckets()["Buckets"] == []
    assert aws["iam"].list_roles()["Roles"] == []
    twice = _cli(project, orch_home, moto, "backend", "destroy", "batch", "--yes", "--json")
    assert twice.returncode == 0, twice.stderr
    assert {i["action"] for i in json.loads(twice.stdout)["items"]} == {"absent"}


async def test_queue_of_50_is_drained_by_workers_with_one_item_in_the_dlq(
    orch_home: Path,
    project: Path,
    aws: dict[str, Any],
    moto: world.Moto,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tasks_in: fargate_docker.Runtime,
) -> None:
    import json

    (project / "orch.toml").write_text(
        _toml(aws, max_attempts="2", max_tasks="8", messages_per_task="10")
    )
    (project / "work.sh").write_text('echo "item $1 from synced code"\n')
    from sidecar.jobs.aws import AwsSession

    sent: list[tuple[str, str, dict[str, Any]]] = []
    real_call = AwsSession.call

    async def spy(self: AwsSession, service: str, operation: str, /, **kw: Any) -> Any:
        sent.append((service, operation, kw))  # a record only: the real call still runs
        return await real_call(self, service, operation, **kw)

    monkeypatch.setattr(AwsSession, "call", spy)
    o = Orchestrator(cwd=project)
    await o.up()
    try:
        await o.backend_init("batch")
        await o.sync_now()
        commands = [f"sh work.sh {i}" for i in range(1, 51)]
        commands[6] = "echo about to fail; exit 3"  # item sweep-00007
        queued = await o.queue_submit("sweep", "batch", commands)
        assert (queued.depth, queued.submitted) == (50, 50)

        # What orch submitted: the service, its network and capacity, the scaling.
        svc = aws["ecs"].describe_services(cluster=CLUSTER, services=["orch-proj-batch-workers"])[
            "services"
        ][0]
        assert svc["desiredCount"] == 5  # min(max(ceil(50 / 10), 0), 8)
        # moto keeps no capacity provider strategy on services: check what orch sent.
        (created,) = [kw for _, op, kw in sent if op == "create_service"]
        assert created["capacityProviderStrategy"] == [
            {"capacityProvider": "FARGATE_SPOT", "weight": 1}
        ]
        net = svc["networkConfiguration"]["awsvpcConfiguration"]
        assert net["subnets"] == [aws["subnet"]] and net["securityGroups"] == [aws["sg"]]
        aas = aws["application-autoscaling"]
        (target,) = aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
        assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 8)
        assert target["ResourceId"] == f"service/{CLUSTER}/orch-proj-batch-workers"
        (policy,) = aas.describe_scaling_policies(ServiceNamespace="ecs")["ScalingPolicies"]
        conf = policy["TargetTrackingScalingPolicyConfiguration"]
        assert conf["TargetValue"] == 10.0
        metrics = conf["CustomizedMetricSpecification"]["Metrics"]
        assert any(m.get("Expression", "").startswith("IF(tasks > 0") for m in metrics)

        workers = world.worker_processes(
            moto, CLUSTER, "orch-proj-batch-workers", 4, tmp_path / "workers", tasks_in
        )
        codes = await asyncio.to_thread(world.drain, moto, "/orch/proj", workers)
        assert codes == [0, 0, 0, 0]  # each exits once the queue stayed empty

        st = await o.queue_status("batch")
        assert (st.depth, st.in_flight, st.failed, st.done) == (0, 0, 1, 49)
        dlq = aws["sqs"].get_queue_url(QueueName="orch-proj-batch-dlq")["QueueUrl"]
        (dead,) = aws["sqs"].receive_message(QueueUrl=dlq)["Messages"]
        assert json.loads(dead["Body"])["id"] == "sweep-00007"

        # Each item's output is found by its id in the worker logs.
        found = aws["logs"].filter_log_events(
            logGroupName="/orch/proj", filterPattern='"sweep-00012"'
        )["events"]
        lines = [e["message"] for e in found]
        assert "[sweep-00012] item 12 from synced code" in lines
        assert "[sweep-00012] done" in lines
        failing = aws["logs"].filter_log_events(
            logGroupName="/orch/proj", filterPattern='"sweep-00007"'
        )["events"]
        assert sum("failed (exit 3)" in e["message"] for e in failing) == 2  # max_attempts

        status = await o.status()
        assert status.queues and status.queues[0].failed == 1
    finally:
        await o.close()
        await o.down()
