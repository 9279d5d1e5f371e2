"""Queue mode: a 200-item queue drained by 1, 4 and 16 simulated Fargate workers, against
running the same items one after another on one machine, in the same run.

    .venv/bin/python bench/fargate_queue.py

The workers are the real worker (`remote_config/fargate_worker.py`, stdlib SigV4 SQS client)
as local processes against moto's SQS server on 127.0.0.1 (a queue and a dead-letter queue
with the redrive `orch backend init` sets). Each item is a short command (`sleep 0.05`, then
one line of output). Reported: drain time (first item sent -> queue empty and nothing in
flight), items per second, the overhead per item (drain time x workers / items, minus the
item's own time when run directly), and the speed-up over one-after-another. This machine
has few cores: the 16-worker figure is bounded by the CPU, not by the queue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit
from remote_config import fargate_worker as fw

ITEMS = 200
WORK = "sleep 0.05; echo item {}"


def sequential() -> float:
    started = time.perf_counter()
    for i in range(1, ITEMS + 1):
        subprocess.run(["sh", "-c", WORK.format(i)], check=True, capture_output=True)
    return time.perf_counter() - started


def drained(sqs, url: str) -> bool:  # type: ignore[no-untyped-def]
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"])
        + int(attrs["ApproximateNumberOfMessagesNotVisible"])
        == 0
    )


def run_workers(endpoint: str, workers: int, tmp: Path) -> tuple[float, int]:
    import boto3

    sqs = boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    name = f"bench-{workers}"
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "300",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}),
        },
    )["QueueUrl"]
    started = time.perf_counter()
    bodies = [fw.message_body(name, i, WORK.format(i)) for i in range(1, ITEMS + 1)]
    for s in range(0, ITEMS, 10):
        sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[s : s + 10])],
        )
    env = {
        "PATH": os.environ["PATH"],
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        **fw.worker_environment("us-east-1", url, idle_s=1.0),
        "ORCH_WAIT_S": "1",
    }
    procs = [
        subprocess.Popen(
            ["sh", "-c", fw.WORKER_COMMAND],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    while not drained(sqs, url):
        time.sleep(0.02)
    drain = time.perf_counter() - started
    for p in procs:
        p.wait(timeout=60)
    left = int(
        sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
    )
    return drain, left


def main() -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        seq = sequential()
        per_item = seq / ITEMS
        results: dict[str, object] = {
            "items": ITEMS,
            "item_command": WORK,
            "sequential_s": round(seq, 2),
            "sequential_items_per_s": round(ITEMS / seq, 1),
        }
        rows: list[list[object]] = [
            ["one after another (one machine)", f"{seq:.2f} s", f"{ITEMS / seq:.1f}", "-", "1.0x"]
        ]
        with tempfile.TemporaryDirectory() as tmp:
            for workers in (1, 4, 16):
                drain, dead = run_workers(endpoint, workers, Path(tmp))
                overhead = drain * workers / ITEMS - per_item
                results[f"workers_{workers}"] = {
                    "drain_s": round(drain, 2),
                    "items_per_s": round(ITEMS / drain, 1),
                    "overhead_per_item_ms": round(overhead * 1000, 1),
                    "speedup_vs_sequential": round(seq / drain, 2),
                    "dead_lettered": dead,
                }
                rows.append(
                    [
                        f"{workers} worker(s) via SQS",
                        f"{drain:.2f} s",
                        f"{ITEMS / drain:.1f}",
                        f"{overhead * 1000:.1f} ms",
                        f"{seq / drain:.1f}x",
                    ]
                )
    finally:
        server.stop()
    emit(
        "queue",
        results,
        rows,
        headers=("way", "drain time", "items/s", "overhead/item", "vs sequential"),
    )


if __name__ == "__main__":
    main()
