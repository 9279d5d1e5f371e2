#!/usr/bin/env bash
# The extension's checks: install, type-check, lint, unit tests, bundle, package (.vsix).
# Exits non-zero on the first failure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/setup_extension.sh"
cd "$root/extension"

step() { printf '\n== extension: %s\n' "$*"; }
step "protocol types match the sidecar's models"
bash "$root/scripts/gen_protocol.sh" --check
step "tsc --noEmit";  npx --no-install tsc --noEmit
step "eslint";        npx --no-install eslint src test
step "unit tests";    npm run --silent test
step "build";         npm run --silent build
step "package";       npm run --silent package
printf '\n== extension: ok (bundle %s bytes, %s)\n' \
    "$(stat -c %s dist/extension.js)" "extension/dist/orch.vsix"
