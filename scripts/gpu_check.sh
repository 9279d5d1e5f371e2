#!/usr/bin/env bash
# One short, prepared check for a machine with a CUDA GPU: the GPU-only tests and the GPU
# benchmark, within a time budget (8 minutes by default), written as ONE JSON result.
#
#   bash scripts/gpu_check.sh [RESULT.json]        # default: ./gpu-check.json
#
# On a machine without a CUDA GPU it says so and exits 0, measuring nothing (no JSON written).
#
# Which Python: $GPU_CHECK_PYTHON if set (an environment with torch, timm, sam2 and pytest: a
# GPU host whose network is closed must bring its own), else the pinned cached venv that
# `scripts/test_gpu.sh` builds (built now if missing: that needs PyPI and several minutes).
#
# Steps, each under its share of the budget (GPU_CHECK_BUDGET_S, default 480 s):
#   1. pytest tests/gpu/test_gpu_cuda.py tests/gpu/test_gpu_checkpoint_layout.py
#      (stream overlap in traces, CUDA events, memory stats, a real OOM, kernels in a session's
#      trace, nsys when installed; official checkpoint layout on the GPU's torch)
#   2. bench/gpu/run.py --rounds 3: lanes vs sequential at batch 4 (1024 px), profiler
#      overhead at 512 px, both models
# The JSON holds the device, the test counts, the benchmark's JSON and the two goals
# (lanes >= 2.5x sequential at batch 4; profiler overhead <= 1.10 at 512 px).
# Exit status: 0 when the tests passed and the benchmark ran (goals are reported, not enforced),
# 1 otherwise, 0 without a GPU.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESULT="${1:-$PWD/gpu-check.json}"
BUDGET="${GPU_CHECK_BUDGET_S:-480}"
START=$(date +%s)

say() { printf '[gpu_check] %s\n' "$*" >&2; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    say "this check needs a CUDA GPU (nvidia-smi lists none here); nothing was measured."
    exit 0
fi

PY="${GPU_CHECK_PYTHON:-}"
if [[ -z "$PY" ]]; then
    VENV="$(GPU_SETUP_ONLY=1 bash "$ROOT/scripts/test_gpu.sh")" || { say "venv setup failed"; exit 1; }
    PY="$VENV/bin/python"
fi
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)'; then
    say "$PY cannot use the GPU (torch.cuda.is_available() is False): a CPU-only torch?"
    exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"

left() { echo $((BUDGET - ($(date +%s) - START))); }

# 1. GPU-only tests: at most 40% of the budget.
t_tests=$((BUDGET * 40 / 100))
say "GPU tests (limit ${t_tests}s)"
timeout --kill-after=10 "$t_tests" "$PY" -m pytest -p no:cacheprovider -o addopts="" -q -rs \
    --junitxml="$WORK/tests.xml" -W ignore::pytest.PytestConfigWarning \
    tests/gpu/test_gpu_cuda.py tests/gpu/test_gpu_checkpoint_layout.py >"$WORK/tests.log" 2>&1
tests_rc=$?
tail -n 15 "$WORK/tests.log" >&2

# 2. The benchmark, with what is left (minus a margin for writing the result).
t_bench=$(($(left) - 15))
say "benchmark (limit ${t_bench}s)"
bench_rc=124
if ((t_bench > 30)); then
    timeout --kill-after=10 "$t_bench" "$PY" bench/gpu/run.py --rounds 3 >"$WORK/bench.log" 2>&1
    bench_rc=$?
fi
cat "$WORK/bench.log" >&2 2>/dev/null || true

"$PY" - "$WORK" "$RESULT" "$tests_rc" "$bench_rc" "$START" <<'EOF'
import json, subprocess, sys, time
import xml.etree.ElementTree as ET
from pathlib import Path

work, result, tests_rc, bench_rc, start = Path(sys.argv[1]), sys.argv[2], *map(int, sys.argv[3:])
tests = {"rc": tests_rc, "timed_out": tests_rc in (124, 137)}
try:
    suite = ET.parse(work / "tests.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    tests.update(n, passed=n["tests"] - n["failures"] - n["errors"] - n["skipped"],
                 seconds=float(suite.get("time", 0)))
    tests["skipped_reasons"] = sorted({s.get("message", "") for s in suite.iter("skipped")})
    tests["failed"] = [c.get("name") for c in suite.iter("testcase")
                       if c.find("failure") is not None or c.find("error") is not None]
except (OSError, ET.ParseError, AttributeError) as exc:
    tests["error"] = f"no junit report: {exc}"
bench = {"rc": bench_rc, "timed_out": bench_rc in (124, 137)}
lines = (work / "bench.log").read_text().splitlines() if (work / "bench.log").exists() else []
for line in reversed(lines):
    if line.startswith("{"):
        bench["result"] = json.loads(line)
        break
goals = {}
if "result" in bench:
    r = bench["result"]
    for model, t in r["throughput"].items():
        goals[f"{model}: lanes >= 2.5x sequential at batch 4"] = {
            "value": t["speedup"], "met": t["speedup"] >= 2.5}
    for model, o in r["profiler_overhead"].items():
        goals[f"{model}: profiler overhead <= 1.10 at {o['size']} px"] = {
            "value": o["ratio"], "met": o["ratio"] <= 1.10}
smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                      "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
out = {"command": "bash scripts/gpu_check.sh", "gpu": smi, "tests": tests, "bench": bench,
       "goals": goals, "elapsed_s": round(time.time() - start, 1)}
Path(result).write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps({k: out[k] for k in ("gpu", "goals", "elapsed_s")}, indent=2))
ok = tests_rc == 0 and bench_rc == 0 and "result" in bench
sys.exit(0 if ok else 1)
EOF
rc=$?
say "result: $RESULT (exit $rc)"
exit $rc
