#!/usr/bin/env bash
# The image the Fargate integration tests run tasks in (tests/integration/fargate_docker.py):
# a Debian bookworm root file system from Debian packages only (mmdebstrap, essential variant
# plus python3: sh, bash, tar and python3 with its standard library, what orch's bootstrap and
# queue worker need; python3-minimal lacks http.client), as a tar cached outside the checkout;
# the tests' private dockerd imports it. No registry.
# Needs root and mmdebstrap (apt-get install mmdebstrap docker.io). Takes about a minute.
set -euo pipefail

out="${ORCH_DEV_CACHE:-$HOME/.cache/orch-dev}/fargate-image/rootfs.tar"
if [[ -f "$out" && "${1:-}" != "--force" ]]; then
    echo "fargate task image: $out (cached; --force rebuilds it)"
    exit 0
fi
command -v mmdebstrap >/dev/null || { echo "needs mmdebstrap: apt-get install mmdebstrap" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
mmdebstrap --variant=essential --include=python3 --format=tar bookworm "$out.partial"
mv "$out.partial" "$out"
echo "fargate task image: $out ($(du -h "$out" | cut -f1))"
