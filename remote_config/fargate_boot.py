"""The worker bootstrap: the shell a Fargate task runs, and the per-job environment it reads.

The task definition's command is `sh -c BOOTSTRAP` (the same text for every job, so one task
definition serves them all); each job's variables come as run_task overrides:

  ORCH_CODE_URL, ORCH_CODE_SHA256  a presigned GET of the code archive and its digest
  ORCH_COMMAND                     the shell command line of the job
  ORCH_OUTPUTS, ORCH_OUTPUTS_URL   a folder (relative to the code) and a presigned PUT for it

The image needs only sh, tar and curl or python3: the script fetches the archive, checks its
digest, unpacks it, runs the command (SIGTERM from `orch stop` or a Spot interruption is
passed on), uploads the declared outputs as a tar.gz, and exits with the command's status.
Everything goes to stdout (`exec 2>&1`): ECS copies a container's stdout and stderr
separately, so lines written to both would reach the log stream out of order (a job's
traceback before its last prints, `orch: exit N` before the job's last line); one stream
keeps the order the job wrote them in, as run.log does for a tmux job. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping

from remote_config.jobs import validate_env

BOOTSTRAP = r"""set -u
exec 2>&1
say() { printf 'orch: %s\n' "$*"; }
get() {
  if command -v curl >/dev/null 2>&1; then curl -fsS --retry 3 -o "$2" "$1"
  else python3 -c 'import sys, urllib.request as u
u.urlretrieve(sys.argv[1], sys.argv[2])' "$1" "$2"
  fi
}
put() {
  if command -v curl >/dev/null 2>&1; then curl -fsS --retry 3 -X PUT -T "$1" "$2" >/dev/null
  else python3 -c 'import sys, urllib.request as u
data = open(sys.argv[1], "rb").read()
h = {"Content-Type": "application/octet-stream"}  # not a form: the body is kept as is
u.urlopen(u.Request(sys.argv[2], data=data, method="PUT", headers=h), timeout=600)' "$1" "$2"
  fi
}
digest() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  else python3 -c 'import hashlib, sys
print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
  fi
}
base="${TMPDIR:-/tmp}/orch"; work="$base/code"
mkdir -p "$work" || exit 70
if [ -n "${ORCH_CODE_URL:-}" ]; then
  get "$ORCH_CODE_URL" "$base/code.tar" || { say "could not fetch the code archive"; exit 71; }
  got=$(digest "$base/code.tar")
  if [ "$got" != "${ORCH_CODE_SHA256:-}" ]; then
    say "code archive digest mismatch: $got"; exit 72
  fi
  tar -xf "$base/code.tar" -C "$work" || { say "could not unpack the code archive"; exit 73; }
  rm -f "$base/code.tar"
fi
cd "$work" || exit 70
if command -v bash >/dev/null 2>&1; then shell=bash; else shell=sh; fi
"$shell" -c "$ORCH_COMMAND" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"; code=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; code=$?; done
trap - TERM INT
if [ -n "${ORCH_OUTPUTS:-}" ] && [ -n "${ORCH_OUTPUTS_URL:-}" ]; then
  if [ -d "$ORCH_OUTPUTS" ]; then
    if tar -czf "$base/outputs.tar.gz" -C "$ORCH_OUTPUTS" . \
      && put "$base/outputs.tar.gz" "$ORCH_OUTPUTS_URL"; then
      say "uploaded outputs from $ORCH_OUTPUTS"
    else
      say "could not upload $ORCH_OUTPUTS"
    fi
  else
    say "declared outputs folder $ORCH_OUTPUTS does not exist; nothing uploaded"
  fi
fi
say "exit $code"
exit "$code"
"""


def container_command() -> list[str]:
    return ["sh", "-c", BOOTSTRAP]


def job_environment(
    command: str,
    env: Mapping[str, str],
    *,
    code_url: str | None,
    code_sha256: str | None,
    outputs: str | None = None,
    outputs_url: str | None = None,
) -> dict[str, str]:
    """The run_task overrides of one job: its own variables, then orch's (which win)."""
    merged = dict(validate_env(env))
    merged["ORCH_COMMAND"] = command
    if code_url:
        merged["ORCH_CODE_URL"] = code_url
        merged["ORCH_CODE_SHA256"] = code_sha256 or ""
    if outputs and outputs_url:
        merged["ORCH_OUTPUTS"] = outputs
        merged["ORCH_OUTPUTS_URL"] = outputs_url
    return merged


def check_outputs(folder: str) -> str:
    """A declared outputs folder: relative to the code, inside it; ValueError otherwise."""
    parts = [p for p in folder.split("/") if p not in ("", ".")]
    if not parts or folder.startswith("/") or ".." in parts or "\x00" in folder:
        raise ValueError(f"--outputs {folder!r}: give a folder inside the project, e.g. out/")
    return "/".join(parts)
