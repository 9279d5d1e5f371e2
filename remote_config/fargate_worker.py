"""Queue mode, the pure part: the worker a Fargate task runs, items, and the worker's env.

A worker task runs the usual bootstrap (code from the snapshot) with `ORCH_COMMAND` running
`WORKER_PY` (Python's standard library only: the image needs no AWS SDK). It takes one item
at a time from the SQS queue, runs its command in the code folder with every output line
prefixed `[ITEM-ID]` (so an item's output is found by its id in the log stream), extends the
item's visibility while it runs, deletes it on success, makes it visible again at once on
failure (SQS's redrive moves it to the dead-letter queue after `max_attempts` receives), and
exits when the queue stayed empty for `ORCH_IDLE_S`. SQS calls are signed with SigV4 using
the task role's credentials (the container credentials endpoint) or the environment's.

Scale-in protection: auto scaling lowers the service's desired count as the backlog shrinks,
and ECS would stop any task, also one halfway through an item. So a worker marks its task
protected (the ECS agent's `$ECS_AGENT_URI/task-protection/v1/state`, PUT
`ProtectionEnabled`) when it takes an item, renews the protection while items run, and
removes it as soon as a receive comes back empty: only idle workers can be scaled in.
Without `ECS_AGENT_URI` (not on ECS) it says so once and goes on. A protection call that
fails is reported in the log, never fails the item. On SIGTERM (a Spot interruption, or
protection that ran out) the running item is stopped and made visible again at once.
No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

WORKER_PY = r"""
import datetime, hashlib, hmac, json, os, signal, subprocess, sys, threading, time
import urllib.error, urllib.parse, urllib.request
E = os.environ
REGION, QUEUE = E["ORCH_REGION"], E["ORCH_QUEUE_URL"]
ENDPOINT = E.get("AWS_ENDPOINT_URL_SQS") or E.get("AWS_ENDPOINT_URL") or f"https://sqs.{REGION}.amazonaws.com"
IDLE, WAIT = float(E.get("ORCH_IDLE_S", "60")), int(E.get("ORCH_WAIT_S", "20"))
BEAT, VIS = float(E.get("ORCH_HEARTBEAT_S", "60")), int(E.get("ORCH_VISIBILITY_S", "300"))
AGENT, GUARD = E.get("ECS_AGENT_URI"), int(E.get("ORCH_PROTECT_MIN", "60"))
_cache = []
_guard = {"until": 0.0, "said": False}
_term = threading.Event()
_child = []

def protect(on):  # scale-in protection on (for GUARD minutes) or off; True: the agent agreed
    if not AGENT:
        if not _guard["said"]:
            print("orch worker: no ECS_AGENT_URI, so no scale-in protection", flush=True)
            _guard["said"] = True
        return False
    body = {"ProtectionEnabled": on}
    if on:
        body["ExpiresInMinutes"] = GUARD
    req = urllib.request.Request(AGENT.rstrip("/") + "/task-protection/v1/state",
                                 data=json.dumps(body).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            d = json.loads(r.read() or b"{}")
    except Exception as exc:
        d = {"error": {"Message": str(exc)}}
    bad = d.get("failure") or d.get("error")
    if bad or "protection" not in d:
        why = (bad or {}).get("Reason") or (bad or {}).get("Message") or d
        print(f"orch worker: scale-in protection {'on' if on else 'off'} failed: {why}", flush=True)
        _guard["until"] = 0.0
        return False
    _guard["until"] = time.monotonic() + GUARD * 60 if on else 0.0
    return True

def guard():  # protected while an item runs: renewed once half its time has gone
    if _guard["until"] - time.monotonic() < GUARD * 30:
        protect(True)

def release():
    if _guard["until"]:
        protect(False)

def stop_item():  # SIGTERM to the item's whole process group (its shell and what it runs)
    for p in _child:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

def on_term(signum, frame):
    _term.set()
    stop_item()

signal.signal(signal.SIGTERM, on_term)

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
    guard()
    stop = threading.Event()
    def beat():
        while not stop.wait(BEAT):
            try:
                call("ChangeMessageVisibility", ReceiptHandle=handle, VisibilityTimeout=VIS)
            except Exception as exc:
                print(f"[{iid}] could not extend its visibility: {exc}", flush=True)
            guard()
    threading.Thread(target=beat, daemon=True).start()
    p = subprocess.Popen(["sh", "-c", item["command"]], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    _child[:] = [p]
    if _term.is_set():
        stop_item()
    for line in p.stdout:
        print(f"[{iid}] " + line.decode(errors="replace").rstrip("\n"), flush=True)
    code = p.wait()
    stop.set()
    if _term.is_set() and code != 0:
        print(f"[{iid}] stopped: the task is stopping; the item goes back to the queue", flush=True)
        call("ChangeMessageVisibility", ReceiptHandle=handle, VisibilityTimeout=0)
        release()
        sys.exit(143)
    if code == 0:
        call("DeleteMessage", ReceiptHandle=handle)
        print(f"[{iid}] done", flush=True)
    else:
        print(f"[{iid}] failed (exit {code})", flush=True)
        call("ChangeMessageVisibility", ReceiptHandle=handle, VisibilityTimeout=0)

idle_since = time.monotonic()
while not _term.is_set():
    out = call("ReceiveMessage", MaxNumberOfMessages=1, VisibilityTimeout=VIS,
               WaitTimeSeconds=max(0, min(WAIT, int(IDLE))),
               AttributeNames=["ApproximateReceiveCount"])
    msgs = out.get("Messages", [])
    if not msgs:
        release()  # idle: scale-in may take this task now
        if time.monotonic() - idle_since >= IDLE:
            print("orch worker: the queue stayed empty; exiting", flush=True)
            sys.exit(0)
        continue
    for m in msgs:
        run(m)
    idle_since = time.monotonic()
release()
print("orch worker: the task is stopping; exiting", flush=True)
sys.exit(143)
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


def worker_environment(
    region: str, queue_url: str, idle_s: float = 60, protect_minutes: int = 60
) -> dict[str, str]:
    """The worker's variables (in its task definition, beside the code URL).
    `protect_minutes`: how long one scale-in protection lasts (renewed at half time while
    items run; ECS accepts 1 to 2880)."""
    if not 1 <= protect_minutes <= 2880:
        raise ValueError("protect_minutes must be 1 to 2880 (ECS task protection's range)")
    return {
        "ORCH_REGION": region,
        "ORCH_QUEUE_URL": queue_url,
        "ORCH_IDLE_S": str(idle_s),
        "ORCH_PROTECT_MIN": str(protect_minutes),
        "ORCH_WORKER_PY": WORKER_PY,
        "ORCH_COMMAND": WORKER_COMMAND,
    }
