"""The POSIX-sh scripts behind remote jobs, rendered as text (pure: nothing runs here).

Every job operation is ONE round trip: the sidecar runs `sh -s` on the remote and sends the
script below on stdin, so the remote login shell only ever parses the two words `sh -s`, and
user data (the command, environment values) reaches the remote as here-document bodies with
quoted delimiters, which no shell interprets. The user's command line is then run by exactly
one shell (bash when present, else sh) from `~/logs/NAME/cmd.sh`.

Remote files of a job, in `~/logs/NAME/` (0700):
  cmd.sh   the command line, as written (argv commands are `shlex.join`ed)
  env.sh   `export KEY='value'` lines (orch.toml [jobs] env, then --env)
  run.sh   the wrapper tmux runs: records pid, tees output to run.log, records the result
  meta     started=EPOCH boot=BOOT_ID code=CODE_VERSION pagesize=N session=S (atomic)
  pid      "PID STARTTIME PGID TMUXPID" of the wrapper (atomic; its parent is tmux)
  result   exit_code=N ended=EPOCH (atomic; written by the wrapper, or by stop after SIGKILL)
  stop     present when orch stopped the job
  run.log  stdout+stderr; run.log.1 after a size rotation; history/ holds earlier runs
Jobs run in tmux sessions on orch's own socket (`~/.orch/tmux`, or a short path under /tmp
when the home path is too long for a unix socket) with orch's own tmux.conf.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping

from remote_config.jobs import (
    COMMAND_SHOWN_BYTES,
    tmux_session,
    validate_env,
    validate_job_name,
)

# Exit statuses the scripts use to report what the sidecar turns into orch errors.
EXIT_NOT_FOUND = 64
EXIT_CONFLICT = 65
EXIT_NO_TMUX = 70
EXIT_TMUX_FAILED = 71

# Functions shared by every script. No single quotes or backslashes in SOCKET (see attach).
SOCKET = (
    'S="$HOME/.orch/tmux"; '
    'if [ ${#S} -gt 100 ]; then S="${TMPDIR:-/tmp}/orch-tmux-$(id -u)/'
    '$(printf %s "$HOME" | cksum | cut -d" " -f1)"; fi'
)

LIB = r"""
L="$HOME/logs"
orch_die() { c=$1; shift; printf 'orch: %s\n' "$*" >&2; exit "$c"; }
orch_socket() { __SOCKET__; }
orch_tmux() { tmux -f "$HOME/.orch/tmux.conf" -S "$S" "$@"; }
orch_boot() { cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo none; }
orch_meta() { sed -n "s/^$1=//p" "$D/meta" 2>/dev/null; }
orch_pid() { P=; PS=; PG=; [ -f "$D/pid" ] && read -r P PS PG _ < "$D/pid"; [ -n "$PG" ] || PG=$P; }
# kill -0 succeeds for a zombie (and some inits reap late): read the state from /proc too.
orch_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [ -r "/proc/$1/stat" ] || return 0
  read -r st < "/proc/$1/stat" 2>/dev/null || return 1
  st=${st##*") "}
  [ "${st%% *}" != Z ]
}
orch_write() { printf "$2" > "$D/$1.tmp" && mv -f "$D/$1.tmp" "$D/$1"; }
# The job is running: started, no result yet, same boot, and its wrapper (or session) alive.
orch_running() {
  [ -f "$D/meta" ] && [ ! -f "$D/result" ] || return 1
  [ "$(orch_meta boot)" = "$(orch_boot)" ] || return 1
  orch_pid
  if [ -n "$P" ]; then orch_alive "$P"; return; fi
  orch_socket; orch_tmux has-session -t "=$SESS" 2>/dev/null
}
# Wait up to $1 tenths of a second for the job's result (or its wrapper to be gone).
orch_gone() {
  i=0
  while :; do
    [ -f "$D/result" ] && return 0
    orch_alive "$P" || return 0
    [ "$i" -ge "$1" ] && return 1
    sleep 0.1; i=$((i + 1))
  done
}
orch_wait_pid() {
  i=0; while [ ! -f "$D/pid" ] && [ "$i" -lt 150 ]; do sleep 0.02; i=$((i + 1)); done
}
# SIGINT, then SIGTERM, then SIGKILL to the job's process group; $1 = grace in tenths.
orch_stop() {
  orch_pid; [ -n "$P" ] || { orch_wait_pid; orch_pid; }
  [ -n "$P" ] || return 1
  date +%s > "$D/stop"
  half=$((($1 + 1) / 2)); killed=
  kill -INT "-$PG" 2>/dev/null || kill -INT "$P" 2>/dev/null
  if ! orch_gone "$half"; then
    kill -TERM "-$PG" 2>/dev/null || kill -TERM "$P" 2>/dev/null
    if ! orch_gone "$half"; then
      kill -KILL "-$PG" 2>/dev/null || kill -KILL "$P" 2>/dev/null
      killed=137; orch_gone 30
    fi
  fi
  [ -f "$D/result" ] || orch_write result "exit_code=$killed\nended=$(date +%s)\n"
  orch_socket; orch_tmux kill-session -t "=$SESS" 2>/dev/null
  return 0
}
# The source files of the project folder: "path size mtime" lines (hashed by CODE_AWK).
orch_sources() {
  cd "$W" 2>/dev/null && find . \( -name .git -o -name node_modules -o -name .venv \
    -o -name venv -o -name __pycache__ -o -name data -o -name .orch \) -prune -o -type f \( \
    -name '*.py' -o -name '*.pyx' -o -name '*.sh' -o -name '*.toml' -o -name '*.cfg' \
    -o -name '*.ini' -o -name '*.yaml' -o -name '*.yml' -o -name 'requirements*.txt' \
    -o -name '*.js' -o -name '*.ts' -o -name '*.go' -o -name '*.rs' -o -name '*.c' \
    -o -name '*.h' -o -name '*.cc' -o -name '*.cpp' -o -name '*.cu' -o -name '*.java' \
    -o -name '*.r' -o -name '*.R' -o -name '*.jl' -o -name '*.ipynb' \) \
    -printf '%P %s %T@\n' 2>/dev/null
}
orch_gen() { gen=; [ -f "$W/.orch/generation" ] && read -r gen < "$W/.orch/generation"; }
# Which code a job runs: the sync generation when there is one, else a hash of its sources.
orch_code() {
  orch_gen
  if [ -n "$gen" ]; then : | awk -v gen="$gen" "$ORCH_CODE_AWK"
  else orch_sources | awk -v gen= "$ORCH_CODE_AWK"; fi
}
# Sets ALL to the pids of the process trees under the given pids, using only builtins
# (/proc/PID/task/*/children, every thread's children), or to every pid when the kernel
# has no children files (the parser then finds the trees by ppid).
orch_walk() {
  ALL=
  if [ ! -r "/proc/$$/task/$$/children" ]; then
    for d in /proc/[0-9]*; do ALL="$ALL ${d#/proc/}"; done
    return
  fi
  q="$*"
  while [ -n "$q" ]; do
    set -- $q
    [ "$#" -gt 0 ] || break
    p=$1; shift; q="$*"
    case " $ALL " in *" $p "*) continue ;; esac
    ALL="$ALL $p"
    for c in /proc/"$p"/task/*/children; do
      [ -r "$c" ] || continue
      kids=; read -r kids < "$c"; q="$q $kids"
    done
  done
}
# One snapshot of every job: its state files, its processes, the current code version.
orch_status() {
  jobs=; live=; roots=
  if cd "$L" 2>/dev/null; then
    for m in */meta; do
      [ -f "$m" ] || continue
      j=${m%/meta}; jobs="$jobs $j"
      [ -f "$j/result" ] && continue
      live=1; P=; [ -f "$j/pid" ] && read -r P _ < "$j/pid"; roots="$roots $P"
    done
  fi
  orch_walk $roots
  orch_gen
  if [ -n "$live" ] && [ -z "$gen" ]; then orch_sources; fi | awk -v jobs="$jobs" \
    -v live="$live" -v gen="$gen" -v pids="$ALL" "$ORCH_CODE_AWK$ORCH_STATUS_AWK"
  if [ ! -r "/proc/$$/stat" ]; then echo "@ps"; ps -A -o pid= -o ppid= -o rss= -o pcpu=; fi
}
ORCH_CODE_AWK='
{ n++; t = length($0) + $(NF - 1) + int($NF) % 1000003 + int($NF % 1 * 1e6)
  h = (h * 31 + t) % 2147483647 }
function code(g) {
  if (gen == "") return "tree:" n + 0 "-" h + 0
  g = gen; gsub(/[^A-Za-z0-9._:-]/, "", g); return "gen:" substr(g, 1, 64)
}
END { if (!status) print code() }'
# pid ppid rss(pages) cpu% starttime; comm may hold spaces and ")", so cut at the last ") "
ORCH_STATUS_AWK='
function slurp(p, max,   line, size) {
  while ((getline line < p) > 0) {
    if (max && (size += length(line) + 1) > max) { print p ".cut:1"; break }
    print p ":" line
  }
  close(p)
}
function stat(pid,   line, s, f, el, cpu, path) {
  path = "/proc/" pid "/stat"
  if ((getline line < path) > 0) {
    s = line; sub(/^.*\) /, "", s); split(s, f, " ")
    el = up - f[20] / 100; cpu = 0; if (el > 0) cpu = (f[12] + f[13]) / el
    if (f[1] != "Z") printf "%s %s %s %.1f %s\n", pid, f[2], f[22], cpu, f[20]
  }
  close(path)
}
BEGIN { status = 1 }
END {
  srand(); print "@now " srand()
  if ((getline boot < "/proc/sys/kernel/random/boot_id") <= 0) boot = "none"
  print "@boot " boot
  if (live) print "@code " code()
  print "@files"
  k = split(jobs, J, " ")
  for (i = 1; i <= k; i++) {
    slurp(J[i] "/meta"); slurp(J[i] "/pid"); slurp(J[i] "/result"); slurp(J[i] "/stop")
    slurp(J[i] "/cmd.sh", __SHOWN__)
  }
  print "@proc"
  if ((getline u < "/proc/uptime") > 0) { split(u, U, " "); up = U[1] }
  k = split(pids, Q, " ")
  for (i = 1; i <= k; i++) stat(Q[i])
  print "@end"
}'
"""

# The wrapper tmux runs in the job's folder. Traps keep it (and the subshell that records
# the exit status) alive through SIGINT/SIGTERM/SIGHUP; the job itself gets default signal
# handling back (traps with a handler are reset in children). tee ignores those signals so
# a job that exits gracefully on SIGINT still gets its last lines into run.log.
WRAPPER = r"""# Generated by orch: runs one job and records its exit status. Do not edit.
D=$(pwd)
trap ':' INT TERM HUP
set -- $(awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[20], f[3] }' \
  "/proc/$$/stat" 2>/dev/null)
printf '%s %s %s %s\n' "$$" "${1:-0}" "${2:-$$}" "$PPID" > "$D/pid.tmp"
mv -f "$D/pid.tmp" "$D/pid"
(
  while sleep __ROTATE_S__; do
    [ -f "$D/result" ] && exit 0
    if [ "$(wc -c < "$D/run.log")" -gt __MAX_BYTES__ ]; then
      cp "$D/run.log" "$D/run.log.1" && : > "$D/run.log"
    fi
  done
) < /dev/null > /dev/null 2>&1 &
{
  trap ':' INT TERM HUP
  rc=1
  if cd __WORKDIR__; then
    . "$D/env.sh"
    if command -v bash > /dev/null 2>&1; then bash "$D/cmd.sh"; else sh "$D/cmd.sh"; fi
    rc=$?
  fi
  echo "$rc" > "$D/rc"
} 2>&1 | (trap '' INT TERM HUP; exec tee -a "$D/run.log")
rc=; read -r rc < "$D/rc" 2>/dev/null
printf 'exit_code=%s\nended=%s\n' "$rc" "$(date +%s)" > "$D/result.tmp"
mv -f "$D/result.tmp" "$D/result"
"""

TMUX_CONF = """# orch's own tmux settings for job sessions (the user's ~/.tmux.conf is not read).
set -g default-shell /bin/sh
set -g history-limit 50000
set -g remain-on-exit off
"""


def _lib() -> str:
    return LIB.replace("__SOCKET__", SOCKET).replace("__SHOWN__", str(COMMAND_SHOWN_BYTES))


def sh_remote_path(path: str) -> str:
    """A remote path (absolute or '~/…') as a sh word that expands '~' to $HOME."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    if not path.startswith("/"):
        raise ValueError(f"remote path must be absolute or start with '~/': {path!r}")
    return shlex.quote(path)


def heredoc(target: str, body: str) -> str:
    """`cat > TARGET` fed by a here-document whose delimiter never occurs in `body`."""
    if not body.endswith("\n"):
        body += "\n"
    lines = set(body.splitlines())
    salt = 0
    while True:
        tag = "ORCH_EOF_" + hashlib.sha256(f"{salt}:{body}".encode()).hexdigest()[:16]
        if tag not in lines:
            break
        salt += 1
    return f"cat > {target} <<'{tag}'\n{body}{tag}\n"


def _prologue(name: str, workdir: str) -> str:
    validate_job_name(name)
    return (
        _lib()
        + f"N={shlex.quote(name)}; SESS={shlex.quote(tmux_session(name))}; "
        + f'D="$L/$N"; W={sh_remote_path(workdir)}\n'
    )


def _wrap(body: str) -> str:
    # One compound command: sh parses the whole script before running any of it, so no
    # command can read the rest of the script from stdin.
    return "{\n" + body + "\n} < /dev/null\n"


def env_script(name: str, env: Mapping[str, str]) -> str:
    lines = ["# Generated by orch: the job's environment."]
    merged = {"PYTHONUNBUFFERED": "1", **validate_env(env), "ORCH_JOB": name}
    lines += [f"export {key}={shlex.quote(value)}" for key, value in merged.items()]
    return "\n".join(lines) + "\n"


def start_script(
    name: str,
    workdir: str,
    command: str | None,
    env: Mapping[str, str] | None = None,
    *,
    replace: bool = False,
    grace_s: float = 10.0,
    retention_days: int = 30,
    max_log_bytes: int = 200 * 1024 * 1024,
    rotate_every_s: int = 10,
) -> str:
    """Start job `name` (command None = restart with the command and env it ran with)."""
    body = [_prologue(name, workdir)]
    body.append(_retention(retention_days))
    body.append("command -v tmux > /dev/null 2>&1 || orch_die 70 'tmux is not installed'")
    body.append(
        "if orch_running; then\n"
        + (
            f"  orch_stop {_tenths(grace_s)}\n"
            if replace
            else '  orch_die 65 "job $N is already running"\n'
        )
        + "fi"
    )
    if command is None:
        body.append('[ -f "$D/cmd.sh" ] || orch_die 64 "no job named $N"')
    body.append(
        'mkdir -p "$D/history" "$HOME/.orch" && chmod 700 "$L" "$D" "$HOME/.orch" || exit 1\n'
        'mkdir -p "$W" || orch_die 1 "cannot create the project folder $W"\n'
        "old=$(orch_meta started)\n"
        "for f in run.log run.log.1; do\n"
        '  [ -f "$D/$f" ] && mv -f "$D/$f" "$D/history/${old:-$(date +%s)}-$f"\n'
        "done\n"
        'rm -f "$D/result" "$D/stop" "$D/pid" "$D/rc" "$D/meta"'
    )
    if command is not None:
        body.append(heredoc('"$D/cmd.sh"', command))
        body.append(heredoc('"$D/env.sh"', env_script(name, env or {})))
    wrapper = (
        WRAPPER.replace("__WORKDIR__", sh_remote_path(workdir))
        .replace("__MAX_BYTES__", str(int(max_log_bytes)))
        .replace("__ROTATE_S__", str(max(1, int(rotate_every_s))))
    )
    body.append(heredoc('"$D/run.sh"', wrapper))
    body.append(heredoc('"$HOME/.orch/tmux.conf"', TMUX_CONF))
    body.append(
        "orch_socket\n"
        'mkdir -p "${S%/*}" && chmod 700 "${S%/*}" || orch_die 1 "cannot use the tmux socket $S"\n'
        ': > "$D/run.log"\n'
        'orch_write meta "started=$(date +%s)\\nboot=$(orch_boot)\\ncode=$(orch_code)\\n'
        'pagesize=$(getconf PAGESIZE 2>/dev/null || echo 4096)\\nsession=$SESS\\n"\n'
        'orch_tmux kill-session -t "=$SESS" 2>/dev/null\n'
        'orch_tmux new-session -d -s "$SESS" -x 200 -y 50 -c "$D" \'exec /bin/sh ./run.sh\' '
        "|| orch_die 71 'tmux could not start the job'\n"
        "orch_wait_pid\n"
        "orch_status"
    )
    return _wrap("\n".join(body))


def _tenths(seconds: float) -> int:
    return max(0, round(seconds * 10))


def _retention(days: int) -> str:
    """Delete earlier runs' logs and finished or removed jobs older than `days`."""
    d = int(days)
    return (
        f'find "$L" -mindepth 3 -maxdepth 3 -path "*/history/*" -type f -mtime +{d} '
        "-exec rm -f {} + 2>/dev/null\n"
        'for j in "$L"/*/; do\n'
        '  [ -d "$j" ] && [ "$j" != "$D/" ] || continue\n'
        '  if [ -f "$j/result" ]; then probe="$j/result"\n'
        '  elif [ ! -f "$j/meta" ]; then probe="$j"\n'
        "  else continue; fi\n"
        f'  [ -n "$(find "$probe" -maxdepth 0 -mtime +{d} 2>/dev/null)" ] && rm -rf "$j"\n'
        "done"
    )


def status_script(workdir: str) -> str:
    return _wrap(_lib() + status_body(workdir))


def status_prelude() -> str:
    """The library, for a long-lived `sh -s` that then runs `status_body` per query."""
    return "exec 2> /dev/null\n" + _lib()


def status_body(workdir: str) -> str:
    return f"W={sh_remote_path(workdir)}\norch_status"


def stop_script(name: str, workdir: str, grace_s: float) -> str:
    """Stop the job if it runs (stopping a finished job changes nothing), then print status."""
    return _wrap(
        _prologue(name, workdir)
        + '[ -f "$D/meta" ] || orch_die 64 "no job named $N"\n'
        + f"if orch_running; then orch_stop {_tenths(grace_s)}; fi\n"
        + "orch_status"
    )


def rm_script(name: str, workdir: str, purge: bool) -> str:
    action = (
        'rm -rf "$D"'
        if purge
        else 'rm -f "$D/meta" "$D/pid" "$D/result" "$D/stop" "$D/rc" "$D/run.sh" "$D/cmd.sh" '
        '"$D/env.sh"'
    )
    return _wrap(
        _prologue(name, workdir)
        + '[ -f "$D/meta" ] || { [ -d "$D" ] && [ '
        + ("1" if purge else "0")
        + ' = 1 ]; } || orch_die 64 "no job named $N"\n'
        + 'if orch_running; then orch_die 65 "job $N is running"; fi\n'
        + action
    )


def logs_script(name: str, workdir: str, offset: int, tail: int | None, follow: bool) -> str:
    """Print `orch-offset N` then run.log from byte N (or its last `tail` lines).

    With `follow`, keep printing new bytes (tail -f) until the job ends, then exit 0; the
    caller reads anything tail had not printed yet from its own byte count. A dot on stderr
    every second notices a client that went away (the write fails) and ends the script.
    """
    tail_lines = -1 if tail is None else max(0, int(tail))
    return _wrap(
        _prologue(name, workdir)
        + '[ -d "$D" ] || orch_die 64 "no job named $N"\n'
        + 'F="$D/run.log"; [ -f "$F" ] || : > "$F"\n'
        + f"off={max(0, int(offset))}\n"
        + f"if [ {tail_lines} -ge 0 ]; then\n"
        + f'  off=$(( $(wc -c < "$F") - $(tail -n {tail_lines} "$F" | wc -c) ))\n'
        + "fi\n"
        + "printf 'orch-offset %s\\n' \"$off\"\n"
        + (_FOLLOW if follow else 'tail -c +$((off + 1)) "$F"\n')
    )


_FOLLOW = r"""orch_ended() {
  [ -f "$D/result" ] && return 0
  [ -f "$D/meta" ] || return 0
  orch_pid
  if [ -z "$P" ]; then [ "$n" -lt 50 ] && return 1; return 0; fi
  ! orch_alive "$P"
}
n=0
if ! orch_ended; then
  tail -c +$((off + 1)) -f "$F" &
  T=$!
  trap 'kill "$T" 2>/dev/null; exit 0' PIPE HUP TERM INT
  while ! orch_ended; do
    sleep 0.2; n=$((n + 1))
    if [ $((n % 5)) -eq 0 ]; then printf . >&2 || break; fi
  done
  kill "$T" 2>/dev/null
  wait "$T" 2>/dev/null
fi
exit 0
"""


def reset_script() -> str:
    """Kill every job (SIGKILL to each process group), stop orch's tmux server and delete
    orch's files on the machine: ~/logs, ~/.orch and ~/work. For tests and benchmarks."""
    return _wrap(
        'for f in "$HOME"/logs/*/pid; do\n'
        '  [ -f "$f" ] || continue; P=; PG=; read -r P _ PG _ < "$f"\n'
        '  [ -n "$P" ] && kill -KILL "-${PG:-$P}" 2>/dev/null\n'
        "done\n"
        f'{SOCKET}; tmux -S "$S" kill-server 2>/dev/null; rm -f "$S"\n'
        'rm -rf "$HOME/logs" "$HOME/.orch" "$HOME/work"'
    )


def attach_command(name: str) -> str:
    """The remote command of `orch attach`: a login shell parses it, so it is one `sh -c`
    word in single quotes with no quote or backslash inside (safe in bash, zsh and fish)."""
    script = f'{SOCKET}; exec tmux -S "$S" attach-session -t ={tmux_session(name)}'
    assert "'" not in script and "\\" not in script
    return f"sh -c '{script}'"
