"""Run every benchmark (or the ones named) and print one JSON document plus their tables.

.venv/bin/python bench/run.py            # all
.venv/bin/python bench/run.py cli        # only bench/cli.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SKIP = {"__init__", "common", "run"}


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in SKIP)
    results: dict[str, object] = {}
    failed = []
    for name in names:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(BENCH / f"{name}.py")],
            capture_output=True,
            text=True,
            cwd=BENCH.parent,
            timeout=1800,
        )
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            failed.append(name)
            results[name] = {"error": f"exit {proc.returncode}", "stderr": proc.stderr[-2000:]}
            continue
        doc = json.loads(proc.stdout)
        doc["wall_s"] = round(time.monotonic() - started, 1)
        results[name] = doc
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    if failed:
        print(f"failed benchmarks: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
