"""The shell text behind remote jobs: the POSIX-sh library every job script starts with, the
wrapper tmux runs for each job, orch's tmux.conf and the log-follow loop (pure text; the
renderers in `job_scripts.py` put them together). Kept apart because it is long and is sh,
not Python: every line here runs on the remote under `sh`.
"""

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
# One snapshot of every job: its state files, the memory and CPU of each running job's
# process tree, the current code version. When a job runs, every pid on the machine is listed
# too (one glob, joined at once by "$*"), for awk's fallback (see ORCH_STATUS_AWK).
orch_status() {
  jobs=; live=
  if cd "$L" 2>/dev/null; then
    for m in */meta; do
      [ -f "$m" ] || continue
      j=${m%/meta}; jobs="$jobs $j"
      [ -f "$j/result" ] || live=1
    done
  fi
  set --
  [ -z "$live" ] || set -- /proc/[0-9]*
  orch_gen
  if [ -n "$live" ] && [ -z "$gen" ]; then orch_sources; fi | awk -v jobs="$jobs" \
    -v live="$live" -v gen="$gen" -v pids="$*" -v known="${K:-}" \
    "$ORCH_CODE_AWK$ORCH_STATUS_AWK"
  if [ ! -r "/proc/$$/stat" ]; then echo "@ps"; ps -A -o pid= -o ppid= -o rss= -o pcpu=; fi
}
ORCH_CODE_AWK='
{ n++; t = length($0) + $(NF - 1) + int($NF) % 1000003 + int($NF % 1 * 1e6)
  h = (h * 31 + t) % 2147483647 }
function code(g) {
  if (gen == "") return "tree:" n + 0 "-" h + 0
  g = gen; gsub(/[^A-Za-z0-9._:~-]/, "", g); return "gen:" substr(g, 1, 64)
}
END { if (!status) print code() }'
# `known` holds "job/key" words from the previous read: a job whose key (its pid and result
# files, which every start and every end rewrite) is unchanged gets "job/same:1" and nothing
# else (its pid, result, stop, meta and command files cannot change without changing the key;
# the reader keeps them, see jobs.StatusCache). Each running job (a pid file and no result)
# gets one "@tree" line: "pid ppid rss(pages) cpu% starttime processes" of its wrapper, with
# rss and cpu summed over the whole tree. The trees are walked down from each wrapper through
# /proc/PID/task/PID/children, reading only the jobs' own processes; a process with several
# threads (a child forked by another thread is listed in that thread's file only, and awk
# cannot list a process's threads) or a kernel without these files makes it read every
# process's stat line instead (`pids`) and find the trees by ppid. In a stat line comm may
# hold spaces and ")", so it is cut at its last ") ". A zombie counts as gone; a wrapper pid
# whose start time is not the recorded one (reused) is not walked.
ORCH_STATUS_AWK='
function slurp(p, max,   line, size) {
  while ((getline line < p) > 0) {
    if (max && (size += length(line) + 1) > max) { print p ".cut:1"; break }
    print p ":" line
  }
  close(p)
}
function whole(p,   line, s) {
  while ((getline line < p) > 0) s = s line "\n"
  close(p); return s
}
function put(tag, s,   n, i, x) {
  n = split(s, x, "\n"); for (i = 1; i < n; i++) print tag ":" x[i]
}
function stat(pid,   path, line, f) {
  path = "/proc/" pid "/stat"; line = ""
  if ((getline line < path) > 0) {
    sub(/^.*\) /, "", line); split(line, f, " ")
    if (f[1] != "Z") {
      PP[pid] = f[2]; RSS[pid] = f[22]; TICKS[pid] = f[12] + f[13]; START[pid] = f[20]
      if (f[18] > 1) SCAN = 1
    }
  }
  close(path)
}
function walk(root, born,   stack, n, pid, path, line, c, k, i) {
  n = 1; stack[1] = root
  while (n && !SCAN) {
    pid = stack[n--]
    if (pid in PP) continue
    stat(pid)
    if (!(pid in PP) || (pid == root && born > 0 && START[pid] != born)) continue
    path = "/proc/" pid "/task/" pid "/children"; line = ""
    if ((getline line < path) < 0) SCAN = 1
    close(path)
    KIDS[pid] = line; k = split(line, c, " ")
    for (i = 1; i <= k; i++) stack[++n] = c[i]
  }
}
function scan(   k, i, pid) {
  delete PP; delete KIDS
  k = split(pids, Q, " ")
  for (i = 1; i <= k; i++) {
    pid = substr(Q[i], 7); stat(pid)
    if (pid in PP) KIDS[PP[pid]] = KIDS[PP[pid]] " " pid
  }
}
function tree(root, born,   stack, n, pid, c, k, i, rss, cpu, count, el) {
  if (!(root in PP)) return
  n = 1; stack[1] = root
  while (n) {
    pid = stack[n--]
    if ((pid in SEEN) || !(pid in PP)) continue
    SEEN[pid] = 1; count++; rss += RSS[pid]
    if (pid == root && born > 0 && START[pid] != born) break
    el = up - START[pid] / 100; if (el > 0) cpu += TICKS[pid] / el
    k = split(KIDS[pid], c, " "); for (i = 1; i <= k; i++) stack[++n] = c[i]
  }
  printf "%s %s %.0f %.1f %s %d\n", root, PP[root], rss, cpu, START[root], count
}
BEGIN { status = 1 }
END {
  srand(); print "@now " srand()
  if ((getline boot < "/proc/sys/kernel/random/boot_id") <= 0) boot = "none"
  print "@boot " boot
  f = ENVIRON["HOME"] "/.orch/interruptions"
  while ((getline line < f) > 0) print "@interruption " line
  close(f)
  if (live) print "@code " code()
  print "@files"
  k = split(known, KN, " ")
  for (i = 1; i <= k; i++) { j = KN[i]; sub(/\/.*/, "", j); KEY[j] = substr(KN[i], length(j) + 2) }
  k = split(jobs, J, " ")
  for (i = 1; i <= k; i++) {
    j = J[i]; p = whole(j "/pid"); r = whole(j "/result")
    if (p != "" && r == "") { split(p, w, " "); ROOTS = ROOTS " " w[1]; BORN[w[1]] = w[2] }
    if (p != "") {
      key = p "|" r; gsub(/[^A-Za-z0-9=._|-]/, ",", key)
      if (KEY[j] == key) { print j "/same:1"; continue }
      print j "/key:" key
    }
    put(j "/pid", p); put(j "/result", r); slurp(j "/stop")
    slurp(j "/meta"); slurp(j "/cmd.sh", __SHOWN__)
  }
  print "@tree"
  if (ROOTS != "") {
    if ((getline u < "/proc/uptime") > 0) { split(u, U, " "); up = U[1] }
    k = split(ROOTS, R, " ")
    # Reading a process in a walk costs two files, in a scan one: walk where the jobs own
    # few of the machine processes (~7 each, the wrapper included; docs/performance.md).
    SCAN = split(pids, Q, " ") < 12 * k
    for (i = 1; i <= k && !SCAN; i++) walk(R[i], BORN[R[i]])
    if (SCAN) scan()
    for (i = 1; i <= k; i++) tree(R[i], BORN[R[i]])
  }
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
if [ -f "$D/logship.json" ] && [ -f "$HOME/.orch/logship/orch_log_shipper.py" ]; then
  # CloudWatch logs (cloudwatch_logs = true): ships run.log beside the job, exits after it.
  (trap '' INT TERM HUP; exec python3 "$HOME/.orch/logship/orch_log_shipper.py" "$D") \
    < /dev/null > /dev/null 2>&1 &
fi
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

FOLLOW = r"""orch_ended() {
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
