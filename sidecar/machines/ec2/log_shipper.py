"""Ships one job's run.log to CloudWatch Logs, from ON the machine (standard library only).

orch's job wrapper starts it beside the job when the machine has `cloudwatch_logs = true`
(the job's `logship.json` says where to); it lives exactly as long as the job: it follows
`run.log` (and its rotation to `run.log.1`), sends each complete line as a log event to the
machine's log group, in the stream `MACHINE/JOB/STARTED`, and after the job's `result`
appears it sends what is left and exits. No agent and no SDK on the machine: credentials are
the instance role's, read from the metadata service (IMDSv2), and requests are signed with
Signature Version 4 here. Shipping never disturbs the job: every failure is written to
`logship.err` in the job's folder and retried at the next interval.

Usage: python3 orch_log_shipper.py JOB_DIR   (reads JOB_DIR/logship.json)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

MAX_BATCH_EVENTS = 5000
MAX_BATCH_BYTES = 900_000  # CloudWatch's limit is 1 MiB, counting 26 bytes per event
MAX_EVENT_BYTES = 200_000  # longer lines are cut (the limit is 256 KiB)
_OPEN = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


def sign_v4(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    creds: dict[str, str],
    region: str,
    service: str,
    now: dt.datetime,
) -> dict[str, str]:
    """`headers` plus X-Amz-Date, the session token and the SigV4 Authorization header."""
    parts = urllib.parse.urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    out = {**headers, "host": parts.netloc, "x-amz-date": amz_date}
    if creds.get("Token"):
        out["x-amz-security-token"] = creds["Token"]
    lower = {k.lower(): " ".join(v.strip().split()) for k, v in out.items()}
    names = sorted(lower)
    canonical = "\n".join(
        [
            method,
            urllib.parse.quote(parts.path or "/", safe="/-_.~"),
            parts.query,
            "".join(f"{n}:{lower[n]}\n" for n in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + creds["SecretAccessKey"]).encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds['AccessKeyId']}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out


def _signature(path: Path) -> tuple[int, int, int] | None:
    """What changes when the wrapper writes a new run.log.1: inode, mtime, size."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _same_tail(old_log: Path, log: Path, size: int) -> bool:
    """Whether `log` holds `old_log`'s last bytes (up to 4 KiB) at the same offset."""
    if size <= 0:
        return False
    start = max(0, size - 4096)
    try:
        with old_log.open("rb") as a, log.open("rb") as b:
            a.seek(start)
            b.seek(start)
            return a.read(size - start) == b.read(size - start)
    except OSError:
        return False


class Shipper:
    def __init__(self, job_dir: Path, config: dict[str, Any]) -> None:
        self.dir = job_dir
        self.config = config
        self.region = str(config["region"])
        self.endpoint = str(config.get("endpoint") or f"https://logs.{self.region}.amazonaws.com")
        for url in (self.endpoint, str(config["metadata_url"])):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"not an http(s) URL: {url}")
        started = "0"
        for line in (
            (job_dir / "meta").read_text().splitlines() if (job_dir / "meta").exists() else []
        ):
            if line.startswith("started="):
                started = line.split("=", 1)[1].strip()
        self.stream = str(config["stream"]).replace("{started}", started)
        self.creds: dict[str, str] = {}
        self.creds_until = 0.0
        self.offset = 0
        self.partial = b""
        self.rotated = _signature(job_dir / "run.log.1")  # a run.log.1 already read (restart)
        self.stream_ready = False

    # -- credentials (the instance role, through IMDSv2) ------------------------------------
    def credentials(self) -> dict[str, str]:
        if self.creds and time.time() < self.creds_until - 300:
            return self.creds
        base = str(self.config["metadata_url"]).rstrip("/")
        ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "300"}
        token = self._get(base + "/latest/api/token", "PUT", ttl)
        auth = {"X-aws-ec2-metadata-token": token}
        path = base + "/latest/meta-data/iam/security-credentials/"
        role = self._get(path, "GET", auth).split()[0]
        found = json.loads(self._get(path + role, "GET", auth))
        self.creds = {k: str(found[k]) for k in ("AccessKeyId", "SecretAccessKey", "Token")}
        expires = str(found.get("Expiration", "")).replace("Z", "+00:00")
        try:
            self.creds_until = dt.datetime.fromisoformat(expires).timestamp()
        except ValueError:
            self.creds_until = time.time() + 900
        return self.creds

    @staticmethod
    def _get(url: str, method: str, headers: dict[str, str]) -> str:
        request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310 (http(s): checked)
        with _OPEN(request, timeout=5) as a:
            return str(a.read().decode())

    # -- CloudWatch Logs (JSON 1.1 over HTTPS, SigV4) ---------------------------------------
    def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload).encode()
        headers = {
            "content-type": "application/x-amz-json-1.1",
            "x-amz-target": f"Logs_20140328.{action}",
        }
        signed = sign_v4(
            "POST",
            self.endpoint + "/",
            headers,
            body,
            self.credentials(),
            self.region,
            "logs",
            dt.datetime.now(dt.UTC),
        )
        request = urllib.request.Request(self.endpoint + "/", body, signed, method="POST")  # noqa: S310
        try:
            with _OPEN(request, timeout=15) as answer:
                text = answer.read().decode() or "{}"
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            if "ResourceAlreadyExistsException" in text and action == "CreateLogStream":
                return {}
            raise RuntimeError(f"{action}: HTTP {exc.code}: {text[:300]}") from None
        return dict(json.loads(text))

    def ensure_stream(self) -> None:
        if not self.stream_ready:
            group, stream = self.config["group"], self.stream
            self.call("CreateLogStream", {"logGroupName": group, "logStreamName": stream})
            self.stream_ready = True

    # -- following run.log -------------------------------------------------------------------
    def read_new(self) -> list[bytes]:
        """The whole lines appended to run.log since the last call, across rotations.

        The wrapper rotates by copy-then-truncate (the job's `tee -a` keeps its file open), so
        a rotation shows as a new run.log.1 — a size smaller than what was read can miss one
        whose run.log grew back past the old offset between two reads. Between the copy and
        the truncate run.log still ends run.log.1's bytes at the same place: then this waits a
        round."""
        log, old_log = self.dir / "run.log", self.dir / "run.log.1"
        try:
            size = log.stat().st_size
        except OSError:
            return []
        old = _signature(old_log)
        chunks = b""
        if size < self.offset or (old is not None and old != self.rotated):
            if old is not None and old != self.rotated and _same_tail(old_log, log, old[2]):
                return []  # copied, not truncated yet
            try:
                with old_log.open("rb") as handle:
                    handle.seek(self.offset)
                    chunks += handle.read()
            except OSError:
                pass
            self.offset, self.rotated = 0, old
        with log.open("rb") as current:
            current.seek(self.offset)
            data = current.read()
        self.offset += len(data)
        lines = (self.partial + chunks + data).split(b"\n")
        self.partial = lines.pop()
        return lines

    def send(self, lines: list[bytes]) -> None:
        if not lines:
            return
        self.ensure_stream()
        now_ms = int(time.time() * 1000)
        batch: list[dict[str, Any]] = []
        size = 0
        for raw in lines:
            message = raw[:MAX_EVENT_BYTES].decode("utf-8", "replace") or " "
            cost = len(message.encode()) + 26
            if batch and (len(batch) >= MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES):
                self._put(batch)
                batch, size = [], 0
            batch.append({"timestamp": now_ms, "message": message})
            size += cost
        self._put(batch)

    def _put(self, events: list[dict[str, Any]]) -> None:
        group, stream = self.config["group"], self.stream
        payload = {"logGroupName": group, "logStreamName": stream, "logEvents": events}
        self.call("PutLogEvents", payload)

    def run(self) -> int:
        interval = float(self.config.get("interval_s") or 5)
        pending: list[bytes] = []
        while True:
            ended = (self.dir / "result").exists() or not (self.dir / "meta").exists()
            pending += self.read_new()
            if ended and self.partial:
                pending.append(self.partial)
                self.partial = b""
            try:
                self.send(pending)
                pending = []
            except (OSError, RuntimeError, ValueError, KeyError) as exc:
                self._error(exc)
                if ended and len(pending) > 100_000:
                    return 1
            if ended and not pending:
                return 0
            time.sleep(interval)

    def _error(self, exc: BaseException) -> None:
        try:
            with (self.dir / "logship.err").open("a") as err:
                err.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {exc}\n")
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job_dir = Path(args[0])
    config = json.loads((job_dir / "logship.json").read_text())
    return Shipper(job_dir, config).run()


if __name__ == "__main__":
    sys.exit(main())
