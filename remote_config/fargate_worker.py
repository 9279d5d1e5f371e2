"""Queue mode, the pure part: the worker a Fargate task runs, items, and the worker's env.

A worker task runs the usual bootstrap (code from the snapshot) with `ORCH_COMMAND` running
`WORKER_PY` (Python's standard library only: the image needs no AWS SDK). It takes one item
at a time from the SQS queue, runs its command in the code folder with every output line
prefixed `[ITEM-ID]` (so an item's output is found by its id in the log stream), extends the
item's visibility while it runs, deletes it on success, makes it visible again at once on
failure (SQS's redrive moves it to the dead-letter queue after `max_attempts` receives), and
exits when the queue stayed empty for `ORCH_IDLE_S`. SQS calls are signed with SigV4 using
the task role's credentials (the container credentials endpoint) or the environment's.
No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

WORKER_PY = r"""
import datetime, hashlib, hmac, json, os, subprocess, sys, threading, time
import urllib.error, urllib.parse, urllib.request
E = os.environ
REGION, QUEUE = E["ORCH_REGION"], E["ORCH_QUEUE_URL"]
ENDPOINT = E.get("AWS_ENDPOINT_URL_SQS") or E.get("AWS_ENDPOINT_URL") or f"https://sqs.{REGION}.amazonaws.com"
IDLE, WAIT = float(E.get("ORCH_IDLE_S", "60")), int(E.get("ORCH_WAIT_S", "20"))
BEAT, VIS = float(E.get("ORCH_HEARTBEAT_S", "60")), int(E.get("ORCH_VISIBILITY_S", "300"))
_cache = []

def creds():
    if E.get("AWS_ACCESS_KEY_ID"):
        return E["AWS_ACCESS_KEY_ID"], E["AWS_SECRET_ACCESS_KEY"], E.get("AWS_SESSION_TOKEN")
    if not _cache or _cache[0][3] < time.time() + 300:
        uri = "http://169.254.170.2" + E["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
        d = json.load(urllib.request.urlopen(uri, timeout=10))
        exp = datetime.datetime.fromisoformat(d["Expiration"].replace("Z", "+00:00")).timestamp()
        _cache[:] = [(d["AccessKeyId"], d["SecretAccessKey"], d["Token"], exp)]
    return _cache[0][:3]

def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()

def call(action, **body):
    data = json.dumps(dict(body, QueueUrl=QUEUE)).encode()
    url = urllib.parse.urlsplit(ENDPOINT)
    for attempt in range(6):
        amz = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        ak, sk, token = creds()
        h = {"content-type": "application/x-amz-json-1.0", "host": url.netloc,
             "x-amz-date": amz, "x-amz-target": "AmazonSQS." + action}
        if token:
            h["x-amz-security-token"] = token
        names = ";".join(sorted(h))
        canon = "\n".join(["POST", url.path or "/", "", "".join(f"{k}:{h[k]}\n" for k in sorted(h)),
                           names, hashlib.sha256(data).hexdigest()])
        scope = f"{amz[:8]}/{REGION}/sqs/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz, scope,
                             hashlib.sha256(canon.encode()).hexdigest()])
        key = ("AWS4" + sk).encode()
        for part in (amz[:8], REGION, "sqs", "aws4_request"):
            key = _hmac(key, part)
        sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, "
                              f"SignedHeaders={names}, Signature={sig}")
        req = urllib.request.Request(ENDPOINT, data=data, headers=h, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=WAIT + 15) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            text = e.read()
            if attempt < 5 and (e.code >= 500 or b"hrottl" in text):
                time.sleep(0.2 * 2 ** attempt)
                continue
            raise RuntimeError(f"SQS {action}: HTTP {e.code}: {text[:300]!r}") from None

def run(msg):
    item, handle = json.loads(msg["Body"]), msg["ReceiptHandle"]
    iid = item["id"]
    tries = msg.get("Attributes", {}).get("ApproximateReceiveCount", "?")
    print(f"[{iid}] start (attempt {tries}): {item['command']}", flush=True)
    stop = threading.Event()
    def beat():
        while not stop.wait(BEAT):
            try:
                call("ChangeMessageVisibility", ReceiptHandle=handle, VisibilityTimeout=VIS)
            except Exception as exc:
                print(f"[{iid}] could not extend its visibility: {exc}", flush=True)
    threading.Thread(target=beat, daemon=True).start()
    p = subprocess.Popen(["sh", "-c", item["command"]], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    for line in p.stdout:
        print(f"[{iid}] " + line.decode(errors="replace").rstrip("\n"), flush=True)
    code = p.wait()
    stop.set()
    if code == 0:
        call("DeleteMessage", ReceiptHandle=handle)
        print(f"[{iid}] done", flush=True)
    else:
        print(f"[{iid}] failed (exit {code})", flush=True)
        call("ChangeMessageVisibility", ReceiptHandle=handle, VisibilityTimeout=0)

idle_since = time.monotonic()
while True:
    out = call("ReceiveMessage", MaxNumberOfMessages=1, VisibilityTimeout=VIS,
               WaitTimeSeconds=max(0, min(WAIT, int(IDLE))),
               AttributeNames=["ApproximateReceiveCount"])
    msgs = out.get("Messages", [])
    if not msgs:
        if time.monotonic() - idle_since >= IDLE:
            print("orch worker: the queue stayed empty; exiting", flush=True)
            sys.exit(0)
        continue
    for m in msgs:
        run(m)
    idle_since = time.monotonic()
"""

WORKER_COMMAND = 'exec python3 -c "$ORCH_WORKER_PY"'


def item_id(queue: str, index: int) -> str:
    return f"{queue}-{index:05d}"


def items_from_lines(lines: Sequence[str]) -> list[str]:
    """Commands of a `--file`: one per line; blank lines and `#` comments skipped."""
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def items_from_each(args: Sequence[str], template: str) -> list[str]:
    """`--each A B C -- CMD {}`: the template with `{}` replaced by each (shell-quoted) arg."""
    import shlex

    if "{}" not in template:
        raise ValueError("the command after '--' must contain {} (where each argument goes)")
    return [template.replace("{}", shlex.quote(a)) for a in args]


def message_body(queue: str, index: int, command: str) -> str:
    return json.dumps({"id": item_id(queue, index), "queue": queue, "command": command})


def worker_environment(region: str, queue_url: str, idle_s: float = 60) -> dict[str, str]:
    """The worker's variables (in its task definition, beside the code URL)."""
    return {
        "ORCH_REGION": region,
        "ORCH_QUEUE_URL": queue_url,
        "ORCH_IDLE_S": str(idle_s),
        "ORCH_WORKER_PY": WORKER_PY,
        "ORCH_COMMAND": WORKER_COMMAND,
    }
