#!/usr/bin/env bash
# Set up (or reuse) the pinned GPU-service environment and run tests/gpu.
#
# The heavy environment (torch, torchvision, timm, sam2: several GB) lives OUTSIDE the
# checkout in ~/.cache/orch-dev/gpu-venv-<key>, where <key> hashes the pinned requirements and
# the Python version; a second run, even in a fresh clone, reuses it and sets up in seconds.
# The checkout itself is put on PYTHONPATH, so a cached venv always tests the CURRENT tree.
#
#   bash scripts/test_gpu.sh            # set up + run all of tests/gpu
#   bash scripts/test_gpu.sh -k loader  # extra arguments go to pytest
#   GPU_SETUP_ONLY=1 bash scripts/test_gpu.sh   # only build the venv, print its path
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
REQ="$ROOT/scripts/gpu-requirements.txt"
SAM2_VERSION="1.1.0"

pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
key="$( (cat "$REQ"; echo "sam2==$SAM2_VERSION"; echo "py$pyver") | sha256sum | cut -c1-12)"
CACHE="${ORCH_DEV_CACHE:-$HOME/.cache/orch-dev}"
VENV="$CACHE/gpu-venv-$key"

mkdir -p "$CACHE"
# Two runs on one machine must not build the same venv at once.
exec 9>"$VENV.lock"
flock 9
if [[ ! -f "$VENV/.orch-complete" ]]; then
    echo "[test_gpu] building $VENV (first run: several minutes)" >&2
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$REQ"
    # sam2's setup.py would build a CUDA extension and, with build isolation, pull ~2.6 GB of
    # CUDA wheels; the extension only speeds up mask post-processing, so skip it.
    SAM2_BUILD_CUDA=0 "$VENV/bin/python" -m pip install --quiet --no-build-isolation \
        --no-deps "sam2==$SAM2_VERSION"
    "$VENV/bin/python" -c 'import torch, torchvision, timm, sam2; print("torch", torch.__version__)'
    touch "$VENV/.orch-complete"
else
    echo "[test_gpu] reusing $VENV" >&2
fi
flock -u 9

if [[ -n "${GPU_SETUP_ONLY:-}" ]]; then
    echo "$VENV"
    exit 0
fi

cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# pytest exits 5 when it collected nothing; that must fail CI too, and it does (non-zero).
set +e
"$VENV/bin/python" -m pytest tests/gpu -p no:cacheprovider -o addopts="" \
    --timeout=600 -q -rs --durations=10 -W ignore::pytest.PytestConfigWarning "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "[test_gpu] no tests were collected" >&2
fi
exit $rc
