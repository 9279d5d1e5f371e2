"""AWS for the Fargate tests: moto's server in this process, and a task runner that runs what
ECS would run.

moto records ECS tasks but runs nothing, so `TaskRunner` plays the Fargate agent: for each
task of the cluster it has not seen, it takes the container's command and environment from
the task definition and the run_task overrides, runs it in a container through the tests'
private Docker daemon, or as a local process where none can run (`fargate_docker.py` says
which, and why), writes its output line by line to moto's CloudWatch Logs stream
under the awslogs name (`orch/job/<task id>`), and when it exits records the exit code, stop
code and reason on moto's task. A task stopped through the API (stop_task) gets SIGTERM, as
ECS sends it, and is recorded `UserInitiated`. `interrupt(task)` plays a Spot interruption.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.fargate_docker import Runtime

REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass
class Moto:
    endpoint: str
    server: Any

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()
        # Tasks stay RUNNING until the runner records their end (moto would otherwise walk
        # them to STOPPED one state per describe call).
        body = b'{"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000000}}'
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/state-manager/set-transition", data=body, method="POST"
        )
        urllib.request.urlopen(req, timeout=10).read()


def start_moto() -> Moto:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return Moto(f"http://{host}:{port}", server)


def clients(moto: Moto) -> dict[str, Any]:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    return {
        name: session.client(name, endpoint_url=moto.endpoint)
        for name in ("ecs", "s3", "logs", "ec2", "iam", "sqs", "application-autoscaling")
    }


def network(ec2: Any) -> tuple[str, str]:
    """A VPC (DNS host names on: moto's awsvpc tasks need them), a subnet, a security group."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="orch", Description="orch", VpcId=vpc)["GroupId"]
    return subnet, group


def moto_task(task_arn: str) -> Any:
    from moto.ecs.models import ecs_backends

    backend = ecs_backends[ACCOUNT][REGION]
    for tasks in backend.tasks.values():
        if task_arn in tasks:
            return tasks[task_arn]
    raise KeyError(task_arn)


@dataclass
class _Run:
    arn: str
    proc: subprocess.Popen[bytes]
    stream: str
    group: str
    reader: threading.Thread
    stop_code: str | None = None
    lines: list[str] = field(default_factory=list)


class TaskRunner:
    """Runs every new task of `cluster` as a local process until `close()`."""

    def __init__(self, moto: Moto, cluster: str, workdir: Path, runtime: Runtime) -> None:
        self.c = clients(moto)
        self.runtime = runtime
        self.cluster = cluster
        self.workdir = workdir
        self.runs: dict[str, _Run] = {}
        self.finished: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # a broken runner must show in the test, not hang it
                print(f"task runner: {exc!r}")
            time.sleep(0.1)

    def _tick(self) -> None:
        arns = self.c["ecs"].list_tasks(cluster=self.cluster)["taskArns"]
        for arn in arns:
            if arn not in self.runs and arn not in self.finished:
                self._start(arn)
        for arn, run in list(self.runs.items()):
            task = moto_task(arn)
            if task.last_status == "STOPPED" and run.proc.poll() is None:
                run.stop_code = "UserInitiated"  # stop_task: ECS sends SIGTERM
                run.proc.send_signal(signal.SIGTERM)
            code = run.proc.poll()
            if code is not None:
                run.reader.join(timeout=10)
                self._finish(run, code)

    def _start(self, arn: str) -> None:
        task = self.c["ecs"].describe_tasks(cluster=self.cluster, tasks=[arn])["tasks"][0]
        td = self.c["ecs"].describe_task_definition(taskDefinition=task["taskDefinitionArn"])
        (container,) = td["taskDefinition"]["containerDefinitions"]
        env = {e["name"]: e["value"] for e in container.get("environment", [])}
        for override in task.get("overrides", {}).get("containerOverrides", []):
            if override["name"] == container["name"]:
                env.update({e["name"]: e["value"] for e in override.get("environment", [])})
        options = container["logConfiguration"]["options"]
        group = options["awslogs-group"]
        stream = f"{options['awslogs-stream-prefix']}/{container['name']}/{arn.rsplit('/', 1)[-1]}"
        self.c["logs"].create_log_stream(logGroupName=group, logStreamName=stream)
        tmp = self.workdir / arn.rsplit("/", 1)[-1]
        tmp.mkdir(parents=True)
        proc = self.runtime.popen(container["command"], env, _container_name(arn), tmp)
        reader = threading.Thread(target=self._pump, args=(arn,), daemon=True)
        self.runs[arn] = _Run(arn, proc, stream, group, reader)
        reader.start()

    def _pump(self, arn: str) -> None:
        run = self.runs[arn]
        assert run.proc.stdout is not None
        for raw in iter(run.proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            run.lines.append(line)
            self.c["logs"].put_log_events(
                logGroupName=run.group,
                logStreamName=run.stream,
                logEvents=[{"timestamp": int(time.time() * 1000), "message": line}],
            )

    def _finish(self, run: _Run, code: int) -> None:
        task = moto_task(run.arn)
        exit_code = 128 - code if code < 0 else code  # killed by a signal: 128 + signal
        task.containers[0].exitCode = exit_code
        task.containers[0].last_status = "STOPPED"
        task.last_status = "STOPPED"
        task.stop_code = run.stop_code or "EssentialContainerExited"
        if not task.stopped_reason:
            task.stopped_reason = "Essential container in task exited"
        self.finished[run.arn] = exit_code
        del self.runs[run.arn]

    def interrupt(self, arn: str) -> None:
        """A Fargate Spot interruption: SIGTERM to the task, recorded as SpotInterruption."""
        task = moto_task(arn)
        run = self.runs[arn]
        deadline = time.monotonic() + 20
        while not run.lines:  # the container's shell has set its SIGTERM trap once it printed
            assert time.monotonic() < deadline, "the task printed nothing"
            time.sleep(0.02)
        run.stop_code = "SpotInterruption"
        task.stopped_reason = "Your Spot Task was interrupted."
        run.proc.send_signal(signal.SIGTERM)

    def wait_finished(self, arn: str, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if arn in self.finished:
                return self.finished[arn]
            time.sleep(0.05)
        run = self.runs.get(arn)
        said = "\n".join(run.lines[-20:]) if run else "(never started)"
        raise AssertionError(f"task {arn} did not finish in {timeout}s; its output:\n{said}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for run in self.runs.values():
            self.runtime.kill(run.proc, _container_name(run.arn))
            run.proc.wait(timeout=10)


def _container_name(arn: str) -> str:
    return f"orch-task-{arn.rsplit('/', 1)[-1]}"


def iter_lines(text: str) -> Iterator[str]:
    yield from text.splitlines()


def worker_processes(
    moto: Moto,
    cluster: str,
    service: str,
    count: int,
    workdir: Path,
    runtime: Runtime,
    idle_s: float = 2.0,
) -> list[tuple[subprocess.Popen[bytes], str]]:
    """Start `count` workers of `service` (containers or local processes, as `runtime` runs
    tasks), each with the command and environment of the service's task definition; returns
    (process, log stream) pairs.
    The task role's credentials come from the environment here (moto's test keys), where
    Fargate gives them through the container credentials endpoint."""
    c = clients(moto)
    svc = c["ecs"].describe_services(cluster=cluster, services=[service])["services"][0]
    td = c["ecs"].describe_task_definition(taskDefinition=svc["taskDefinition"])
    (container,) = td["taskDefinition"]["containerDefinitions"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    env.update(moto.env())
    env["ORCH_IDLE_S"] = str(idle_s)  # 60 s in the task definition; shorter for tests
    group = container["logConfiguration"]["options"]["awslogs-group"]
    out = []
    for i in range(count):
        tmp = workdir / f"worker-{i}"
        tmp.mkdir(parents=True)
        stream = f"orch/job/worker-{i}"
        c["logs"].create_log_stream(logGroupName=group, logStreamName=stream)
        proc = runtime.popen(container["command"], env, f"orch-worker-{tmp.name}-{i}", tmp)
        out.append((proc, stream))
    return out


def drain(
    moto: Moto, group: str, workers: list[tuple[subprocess.Popen[bytes], str]], timeout: float = 120
) -> list[int]:
    """Wait for the workers to exit, writing their output to their log streams."""
    c = clients(moto)

    def pump(proc: subprocess.Popen[bytes], stream: str) -> None:
        assert proc.stdout is not None
        batch: list[dict[str, Any]] = []
        for raw in iter(proc.stdout.readline, b""):
            msg = raw.decode(errors="replace").rstrip("\n")
            batch.append({"timestamp": int(time.time() * 1000), "message": msg})
            if len(batch) >= 20:
                c["logs"].put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
                batch = []
        if batch:
            c["logs"].put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)

    threads = [threading.Thread(target=pump, args=w, daemon=True) for w in workers]
    for t in threads:
        t.start()
    codes = []
    for (proc, _), t in zip(workers, threads, strict=True):
        try:
            codes.append(proc.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        t.join(timeout=30)
    return codes
