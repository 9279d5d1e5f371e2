"""The pure Fargate renderers: task definition, run_task request, IAM, scaling, bootstrap."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from remote_config import fargate as fg
from remote_config import fargate_boot as boot
from remote_config import fargate_prices as prices
from remote_config.model import FargateBackend, OrchConfig


def _cfg(**kw: object) -> FargateBackend:
    base: dict[str, object] = {
        "kind": "fargate",
        "subnets": ["subnet-1"],
        "security_groups": ["sg-1"],
    }
    base.update(kw)
    return FargateBackend.model_validate(base)


def test_config_parses_in_orch_toml_and_checks_sizes() -> None:
    cfg = OrchConfig.model_validate(
        {"backends": {"batch": {"kind": "fargate", "cpu": 2048, "memory": 8192}}}
    )
    assert cfg.backends["batch"].cpu == 2048
    with pytest.raises(ValidationError, match="Fargate offers memory 4096 to 16384"):
        _cfg(cpu=2048, memory=2048)
    with pytest.raises(ValidationError, match="512, 1024 or 2048"):
        _cfg(cpu=256, memory=1536)
    with pytest.raises(ValidationError, match="not an SSM or Secrets Manager ARN"):
        _cfg(secrets={"TOKEN": "plain-text"})
    with pytest.raises(ValidationError, match="capacity_provider"):
        _cfg(capacity_provider="EC2")
    with pytest.raises(ValidationError, match="min_tasks"):
        _cfg(min_tasks=5, max_tasks=2)
    with pytest.raises(ValidationError, match="backend name"):
        OrchConfig.model_validate({"backends": {"-x": {"kind": "fargate"}}})


def test_task_definition_uses_awslogs_roles_secrets_and_size() -> None:
    cfg = _cfg(
        cpu=512,
        memory=2048,
        ephemeral_storage_gb=40,
        env={"A": "1"},
        secrets={"TOKEN": "arn:aws:ssm:us-east-1:123456789012:parameter/t"},
        region="eu-west-1",
    )
    n = fg.names("proj", "batch", cfg)
    td = fg.task_definition(n, cfg, "arn:exec", "arn:task", boot.container_command())
    assert td["family"] == "orch-proj-batch"
    assert td["requiresCompatibilities"] == ["FARGATE"] and td["networkMode"] == "awsvpc"
    assert (td["cpu"], td["memory"]) == ("512", "2048")
    assert td["ephemeralStorage"] == {"sizeInGiB": 40}
    assert (td["executionRoleArn"], td["taskRoleArn"]) == ("arn:exec", "arn:task")
    (c,) = td["containerDefinitions"]
    assert c["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": "/orch/proj",
            "awslogs-region": "eu-west-1",
            "awslogs-stream-prefix": "orch",
        },
    }
    assert c["secrets"] == [
        {"name": "TOKEN", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/t"}
    ]
    assert c["environment"] == [{"name": "A", "value": "1"}]
    assert c["command"][:2] == ["sh", "-c"]
    assert fg.definition_digest(td) == fg.definition_digest(dict(td))
    other = fg.task_definition(n, _cfg(cpu=1024), "arn:exec", "arn:task", ["x"])
    assert fg.definition_digest(other) != fg.definition_digest(td)


def test_run_task_request_spot_and_network() -> None:
    cfg = _cfg(capacity_provider="FARGATE_SPOT", assign_public_ip=False)
    n = fg.names("proj", "batch", cfg)
    req = fg.run_task_request(n, cfg, "arn:td", "train-1", {"ORCH_COMMAND": "echo"})
    assert req["cluster"] == "orch-proj"
    assert req["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
    assert "launchType" not in req  # a strategy and a launch type exclude each other
    assert req["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": ["subnet-1"],
        "securityGroups": ["sg-1"],
        "assignPublicIp": "DISABLED",
    }
    (override,) = req["overrides"]["containerOverrides"]
    assert override == {"name": "job", "environment": [{"name": "ORCH_COMMAND", "value": "echo"}]}
    assert {"key": "orch:job", "value": "train-1"} in req["tags"]
    assert fg.log_stream("arn:aws:ecs:r:1:task/orch-proj/abc123") == "orch/job/abc123"


@pytest.mark.parametrize(
    ("task", "state", "code"),
    [
        ({"lastStatus": "PROVISIONING"}, "running", None),
        ({"lastStatus": "RUNNING"}, "running", None),
        (
            {
                "lastStatus": "STOPPED",
                "stopCode": "EssentialContainerExited",
                "containers": [{"name": "job", "exitCode": 0}],
            },
            "succeeded",
            0,
        ),
        (
            {
                "lastStatus": "STOPPED",
                "stopCode": "EssentialContainerExited",
                "containers": [{"name": "job", "exitCode": 3}],
            },
            "failed",
            3,
        ),
        (
            {
                "lastStatus": "STOPPED",
                "stopCode": "UserInitiated",
                "containers": [{"name": "job", "exitCode": 137}],
            },
            "stopped",
            137,
        ),
        (
            {
                "lastStatus": "STOPPED",
                "stopCode": "SpotInterruption",
                "stoppedReason": "Your Spot Task was interrupted.",
            },
            "interrupted",
            None,
        ),
        (
            {
                "lastStatus": "STOPPED",
                "stopCode": "TaskFailedToStart",
                "stoppedReason": "CannotPullContainerError",
            },
            "failed",
            None,
        ),
    ],
)
def test_task_state(task: dict[str, object], state: str, code: int | None) -> None:
    got = fg.task_state(task)
    assert (got.state, got.exit_code) == (state, code)
    if task.get("lastStatus") == "PROVISIONING":
        assert got.detail == "starting"
    if task.get("stopCode") == "TaskFailedToStart":
        assert got.detail == "CannotPullContainerError"


def test_iam_policies_are_least_privilege() -> None:
    cfg = _cfg(
        secrets={
            "A": "arn:aws:ssm:us-east-1:123456789012:parameter/a",
            "B": "arn:aws:secretsmanager:us-east-1:123456789012:secret:b",
        }
    )
    n = fg.names("proj", "batch", cfg)
    trust = fg.trust_policy("123456789012")
    assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    assert trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"] == "123456789012"
    ex = fg.execution_policy(n, cfg, "123456789012")
    by_action = {a: s["Resource"] for s in ex["Statement"] for a in s["Action"]}
    assert by_action["logs:PutLogEvents"] == (
        "arn:aws:logs:us-east-1:123456789012:log-group:/orch/proj:log-stream:*"
    )
    assert by_action["ssm:GetParameters"] == ["arn:aws:ssm:us-east-1:123456789012:parameter/a"]
    assert by_action["secretsmanager:GetSecretValue"] == [
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:b"
    ]
    # Only the token call is account-wide (ECR needs it so); nothing else is "*".
    assert [a for a, r in by_action.items() if r == "*"] == ["ecr:GetAuthorizationToken"]
    tasks = fg.cluster_tasks_arn("us-east-1", "1", "orch-proj")
    assert tasks == "arn:aws:ecs:us-east-1:1:task/orch-proj/*"
    tp = fg.task_policy("arn:aws:sqs:us-east-1:1:q", tasks)
    protect, sqs = tp["Statement"]
    assert sqs["Resource"] == "arn:aws:sqs:us-east-1:1:q"
    assert all(a.startswith("sqs:") for a in sqs["Action"])
    # Scale-in protection of its own cluster's tasks only (what the ECS agent calls for it).
    assert protect["Action"] == ["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"]
    assert protect["Resource"] == tasks
    assert not any(a.startswith(("s3:", "iam:")) for s in tp["Statement"] for a in s["Action"])
    assert all(s["Resource"] != "*" for s in tp["Statement"])


@given(
    depth=st.integers(0, 10_000),
    per=st.integers(1, 50),
    lo=st.integers(0, 20),
    extra=st.integers(0, 100),
)
def test_desired_tasks_is_the_brief_formula(depth: int, per: int, lo: int, extra: int) -> None:
    hi = lo + extra
    d = fg.desired_tasks(depth, per, lo, hi)
    assert lo <= d <= hi
    if lo < d < hi:  # unclamped: just enough tasks for the backlog target
        assert (d - 1) * per < depth <= d * per


def test_scaling_policy_targets_backlog_per_task() -> None:
    cfg = _cfg(min_tasks=0, max_tasks=16, messages_per_task=5)
    n = fg.names("proj", "batch", cfg)
    target = fg.scalable_target(n, cfg)
    assert target["ResourceId"] == "service/orch-proj/orch-proj-batch-workers"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 16)
    pol = fg.scaling_policy(n, cfg)
    conf = pol["TargetTrackingScalingPolicyConfiguration"]
    assert conf["TargetValue"] == 5.0
    metrics = {m["Id"]: m for m in conf["CustomizedMetricSpecification"]["Metrics"]}
    assert metrics["backlog"]["ReturnData"] is True
    assert "depth / tasks" in metrics["backlog"]["Expression"]
    depth = metrics["depth"]["MetricStat"]["Metric"]
    assert depth["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert depth["Dimensions"] == [{"Name": "QueueName", "Value": "orch-proj-batch-queue"}]


def test_prices_are_dated_and_bill_a_minute_at_least() -> None:
    assert prices.PRICES_SOURCE.startswith("https://aws.amazon.com/fargate/pricing")
    r, exact = prices.rate("us-east-1", "X86_64", "FARGATE")
    assert exact
    one_hour = prices.task_cost(3600, 1024, 2048, 20, r)
    assert one_hour == pytest.approx(0.04048 + 2 * 0.004445)
    assert prices.task_cost(5, 1024, 2048, 20, r) == pytest.approx(one_hour / 60)
    spot, _ = prices.rate("us-east-1", "X86_64", "FARGATE_SPOT")
    assert prices.task_cost(3600, 1024, 2048, 20, spot) < one_hour
    _, exact = prices.rate("ap-south-1", "X86_64", "FARGATE")
    assert not exact


def test_outputs_folder_must_stay_inside() -> None:
    assert boot.check_outputs("./out/") == "out"
    for bad in ("/etc", "../x", "", "a/../../b"):
        with pytest.raises(ValueError, match="inside the project"):
            boot.check_outputs(bad)


def _archive(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.sh").write_text("echo from-code; mkdir -p out; echo result > out/r.txt\n")
    tar_path = tmp_path / "code.tar"
    with tarfile.open(tar_path, "w") as tf:
        tf.add(src / "main.sh", arcname="main.sh")
    return tar_path, hashlib.sha256(tar_path.read_bytes()).hexdigest()


def test_bootstrap_runs_for_real_with_file_urls(tmp_path: Path) -> None:
    """The worker shell itself, run by sh here: fetch (curl file://), check, unpack, run,
    upload outputs (curl -T to a file:// URL), exit with the command's status."""
    tar_path, sha = _archive(tmp_path)
    out = tmp_path / "outputs.tar.gz"
    env = boot.job_environment(
        'sh main.sh; echo "X=$X"; exit 4',
        {"X": "42"},
        code_url=tar_path.as_uri(),
        code_sha256=sha,
        outputs="out",
        outputs_url=out.as_uri(),
    )
    tmp = tmp_path / "task-tmp"
    tmp.mkdir()
    proc = subprocess.run(
        boot.container_command(),
        env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 4, proc.stdout
    assert "from-code" in proc.stdout and "X=42" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "orch: exit 4" and proc.stderr == ""
    with tarfile.open(out) as tf:
        member = tf.extractfile("./r.txt")
        assert member is not None and member.read() == b"result\n"


def test_bootstrap_refuses_an_archive_with_the_wrong_digest(tmp_path: Path) -> None:
    tar_path, _ = _archive(tmp_path)
    env = boot.job_environment("echo never", {}, code_url=tar_path.as_uri(), code_sha256="0" * 64)
    proc = subprocess.run(
        boot.container_command(),
        env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 72
    assert "digest mismatch" in proc.stdout and "never" not in proc.stdout


def test_queue_items_from_a_file_and_from_each() -> None:
    from remote_config import fargate_worker as fw

    assert fw.items_from_lines(["# sweep", "python a.py 1", "", "  python a.py 2  "]) == [
        "python a.py 1",
        "python a.py 2",
    ]
    assert fw.items_from_each(["0.1", "a b"], "python t.py --lr {}") == [
        "python t.py --lr 0.1",
        "python t.py --lr 'a b'",
    ]
    with pytest.raises(ValueError, match=r"\{\}"):
        fw.items_from_each(["x"], "python t.py")
    body = fw.message_body("sweep", 7, "echo hi")
    assert '"id": "sweep-00007"' in body


def test_worker_environment_sets_how_long_a_protection_lasts() -> None:
    from remote_config import fargate_worker as fw

    env = fw.worker_environment("us-east-1", "https://q", idle_s=5, protect_minutes=30)
    assert (env["ORCH_IDLE_S"], env["ORCH_PROTECT_MIN"]) == ("5", "30")
    assert fw.worker_environment("us-east-1", "https://q")["ORCH_PROTECT_MIN"] == "60"
    assert "/task-protection/v1/state" in env["ORCH_WORKER_PY"]
    for bad in (0, 2881):
        with pytest.raises(ValueError, match="1 to 2880"):
            fw.worker_environment("us-east-1", "https://q", protect_minutes=bad)


def test_queue_cli_words() -> None:
    from sidecar.cli.backend_cmds import parse_queue_args
    from sidecar.errors import UsageError

    opts = parse_queue_args(["--on", "b", "--each", "1", "2", "--", "python", "x.py", "--n", "{}"])
    assert (opts["on"], opts["each"], opts["command"]) == (
        "b",
        ["1", "2"],
        ["python", "x.py", "--n", "{}"],
    )
    assert parse_queue_args(["--file", "c.txt", "--on", "b", "--json"])["json"] is True
    for bad in (
        ["--file", "c"],
        ["--on", "b"],
        ["--on", "b", "--each", "1"],
        ["--on", "b", "--file", "c", "--each", "1", "--", "x {}"],
        ["--bogus"],
    ):
        with pytest.raises(UsageError):
            parse_queue_args(bad)


def test_bootstrap_uses_python3_where_the_image_has_no_curl(tmp_path: Path) -> None:
    """An image with sh, tar and python3 only (no curl, no sha256sum): same result."""
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "tar", "mkdir", "rm", "cut", "gzip", "cat", "echo"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    # The interpreter itself, not whatever `python3` is on PATH (a pyenv shim is a bash script).
    (bin_dir / "python3").symlink_to(Path(sys.executable).resolve())
    assert not (bin_dir / "curl").exists()
    tar_path, sha = _archive(tmp_path)
    out = tmp_path / "out.tar.gz"
    server_dir = tmp_path / "srv"
    server_dir.mkdir()
    env = boot.job_environment(
        "sh main.sh",
        {},
        code_url=tar_path.as_uri(),  # urllib reads file:// URLs as curl does
        code_sha256=sha,
        outputs="out",
        outputs_url=out.as_uri(),  # urllib cannot PUT to file://: the upload failure is said
    )
    proc = subprocess.run(
        boot.container_command(),
        env={"PATH": str(bin_dir), "TMPDIR": str(tmp_path / "t"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout
    assert "from-code" in proc.stdout
    assert "could not upload out" in proc.stdout  # said, and the job's status is kept
