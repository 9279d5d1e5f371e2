#!/usr/bin/env bash
# orch's main job on the embedded local machine: set everything up, bring the machine up,
# run a sample command on it through the real OpenSSH client, run a named job there, follow
# its log, and show the status.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== orch up"
orch up
echo "== orch ssh -- (a sample command on the local machine)"
orch ssh -- 'echo "hello from the orch local machine: user=$USER home=$HOME"; uname -sr'
echo "== orch run demo -- … (a named job in tmux on the machine; survives disconnects)"
orch run demo --replace -- sh -c 'echo "working on $(hostname) as $USER"; sleep 1; echo "result: $((6 * 7))"'
echo "== orch logs demo --follow (ends when the job does)"
orch logs demo --follow
echo "== orch status"
orch status
echo
echo "The local machine keeps running; stop it with: .venv/bin/orch down"
