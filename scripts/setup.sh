#!/usr/bin/env bash
# One-shot set-up on a fresh Debian machine (idempotent, fast when already done):
# apt packages, the Python venv (.venv) with orch and its dev tools, the test user for the
# real-sshd tests, and the extension's npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(openssh-client openssh-server rsync tmux procps git python3-venv)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Never the project's own venv python (it is about to be rebuilt when pyproject.toml changed).
PATH="$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$PWD/.venv/bin" | paste -sd: -)"
PYTHON="${ORCH_PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup: orch needs Python >= 3.11 ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 1; }

stamp=$(cat pyproject.toml | sha256sum | cut -c1-16)-$("$PYTHON" -c 'import sys; print(sys.version_info[:2])' | tr -d ' (),')
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.orch-stamp 2>/dev/null)" != "$stamp" ]; then
  echo "setup: creating .venv and installing orch[dev] (log: .venv/setup.log)"
  rm -rf .venv
  "$PYTHON" -m venv .venv
  {
    .venv/bin/python -m pip install --upgrade pip
    # compat mode: a plain path entry instead of an import hook (faster `orch` cold start)
    .venv/bin/python -m pip install -e '.[dev]' --config-settings editable_mode=compat
  } > .venv/setup.log 2>&1 || { tail -30 .venv/setup.log >&2; echo "setup: pip failed" >&2; exit 1; }
  .venv/bin/python -c 'import sidecar, asyncssh, pygls, pytest_lsp'
  echo "$stamp" > .venv/.orch-stamp
fi

# The real-sshd tests log in as this user, whose home is light and disposable.
# '*' = no password but not locked (sshd refuses locked accounts even for key logins).
if [ "$(id -u)" -eq 0 ]; then
  id orch-test >/dev/null 2>&1 || useradd -m -s /bin/bash orch-test
  [ "$(getent shadow orch-test | cut -d: -f2)" = "*" ] || usermod -p '*' orch-test
fi

if [ -f scripts/setup_extension.sh ]; then
  bash scripts/setup_extension.sh
fi
