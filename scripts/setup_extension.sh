#!/usr/bin/env bash
# Installs what building the VS Code extension needs: its npm packages, exactly as pinned in
# extension/package-lock.json (`npm ci`). Skips the install when node_modules already matches
# the lock file, so a second run takes well under a second.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/extension"

if ! command -v npm >/dev/null; then
    echo "setup_extension: npm not found; install Node.js 20+ (apt-get install nodejs npm)" >&2
    exit 1
fi

# A stamp in node_modules records which lock file the last successful `npm ci` installed.
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.orch-lock-sha256 2>/dev/null)" = "$want" ]; then
    exit 0
fi
echo "setup_extension: npm ci in extension/" >&2
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >node_modules/.orch-lock-sha256
