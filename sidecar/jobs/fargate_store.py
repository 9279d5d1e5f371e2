"""What orch remembers of Fargate jobs: one small JSON record per job, on this computer.

ECS is the source of truth while a task lives, but it forgets stopped tasks after about an
hour, so each record keeps the task ARN, where its log and outputs are, and (once the task
has stopped) its final state, exit code, times and cost. Records live in
`$ORCH_HOME/fargate/<project>/<backend>/jobs/<name>.json` (0600 in a 0700 folder); they hold
no secrets (presigned URLs are never written down).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sidecar.state import secure_dir


class JobRecord(BaseModel):
    name: str
    task_arn: str
    cluster: str
    log_group: str
    log_stream: str
    command: str
    env: dict[str, str] = {}
    code_key: str | None = None
    outputs: str | None = None
    outputs_key: str | None = None
    created: str
    cpu: int
    memory: int
    storage_gb: int
    capacity_provider: str
    stop_requested: bool = False
    final: dict[str, Any] | None = None  # state, exit_code, detail, started, ended, cost_usd


class Store:
    def __init__(self, home: Path, project: str, backend: str) -> None:
        self.root = home / "fargate" / project / backend
        self.jobs_dir = self.root / "jobs"

    def _ensure(self) -> None:
        for folder in (self.root.parent.parent, self.root.parent, self.root, self.jobs_dir):
            secure_dir(folder)

    def path(self, name: str) -> Path:
        return self.jobs_dir / f"{name}.json"

    def get(self, name: str) -> JobRecord | None:
        try:
            return JobRecord.model_validate_json(self.path(name).read_text())
        except (OSError, ValueError):
            return None

    def all(self) -> list[JobRecord]:
        if not self.jobs_dir.is_dir():
            return []
        out = []
        for file in sorted(self.jobs_dir.glob("*.json")):
            record = self.get(file.stem)
            if record is not None:
                out.append(record)
        return out

    def put(self, record: JobRecord) -> None:
        self._ensure()
        self._write(self.path(record.name), record.model_dump_json(indent=1))

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(name).unlink()

    # -- small caches (task definition digests, code archives per snapshot) --------------
    def cache_get(self, key: str) -> str | None:
        data = self._cache()
        value = data.get(key)
        return value if isinstance(value, str) else None

    def cache_put(self, key: str, value: str) -> None:
        self._ensure()
        data = self._cache()
        data[key] = value
        self._write(self.root / "cache.json", json.dumps(data, indent=1, sort_keys=True))

    def _cache(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "cache.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _write(path: Path, text: str) -> None:
        tmp = path.with_suffix(f".tmp.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)


def has_records(home: Path, project: str, backend: str) -> bool:
    return any(Store(home, project, backend).jobs_dir.glob("*.json"))
