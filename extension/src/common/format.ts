/**
 * Text the extension shows: status-bar items, job summaries, notification messages, and
 * default job names. Pure functions of the protocol types, so they are unit-tested directly.
 */

import type {
  ConfigProblem,
  ConfigState,
  JobInfo,
  MachineStatus,
  OrchErrorData,
  OrchStatus,
  QueueStatus,
  SshConfigResult,
  SyncStatus,
} from "../protocol";

/** Where the connection to the sidecar stands (the extension's own state, not the server's). */
export type SidecarState = "starting" | "running" | "restarting" | "stopped";

export interface ItemText {
  text: string;
  tooltip: string;
  /** Draws the item in the status bar's error/warning colours. */
  severity?: "error" | "warning";
}

const ENDED: ReadonlySet<string> = new Set(["succeeded", "failed", "stopped", "lost", "interrupted"]);

export function isRunning(job: JobInfo): boolean {
  return job.state === "running";
}

export function isEnded(job: JobInfo): boolean {
  return ENDED.has(job.state);
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
    return "";
  }
  if (seconds < 60) {
    return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  }
  const m = Math.floor(seconds / 60);
  if (m < 60) {
    return `${m}m ${Math.floor(seconds % 60)}s`;
  }
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) {
    return "";
  }
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

const MACHINE_ICON: Record<MachineStatus["state"], string> = {
  running: "$(vm-running)",
  starting: "$(loading~spin)",
  stopping: "$(loading~spin)",
  stopped: "$(vm-outline)",
  "not-created": "$(vm-outline)",
  unknown: "$(question)",
};

/** "g4dn.xlarge on-demand: $0.5260/h, $1.23 since start" for a cloud machine. */
export function costLine(machine: MachineStatus): string {
  const what = `${machine.instance_type} ${machine.market ?? ""}`.trim();
  if (machine.price_per_hour === null || machine.price_per_hour === undefined) {
    return `${what}: price unknown`;
  }
  const spent = machine.cost_so_far === null || machine.cost_so_far === undefined ? "" : `, $${machine.cost_so_far.toFixed(2)} since start`;
  return `${what}: $${machine.price_per_hour.toFixed(4)}/h${spent}`;
}

/** "5 min ago" for a moment `ms` milliseconds back. */
export function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 10) {
    return "just now";
  }
  if (s < 60) {
    return `${s} s ago`;
  }
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m} min ago`;
  }
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h ago` : `${Math.floor(h / 24)} days ago`;
}

/** An ISO time from the sidecar as local time and how long ago: "14:03:12 (5 min ago)". */
export function formatWhen(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) {
    return "";
  }
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) {
    return iso;
  }
  const pad = (n: number) => String(n).padStart(2, "0");
  const time = `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}`;
  const today = new Date(now).toDateString() === when.toDateString();
  const day = today ? "" : `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())} `;
  return `${day}${time} (${ago(now - when.getTime())})`;
}

/** One problem of orch.toml as a line without the file's path: "line 6: key: what". */
export function configProblemText(problem: ConfigProblem): string {
  const where = problem.line ? `line ${problem.line}: ` : "";
  return `${where}${problem.path ? `${problem.path}: ` : ""}${problem.message}`;
}

export function configHasErrors(config: ConfigState | undefined): boolean {
  return (config?.problems.length ?? 0) > 0;
}

export function machineItem(
  sidecar: SidecarState,
  machine: MachineStatus | undefined,
  config?: ConfigState,
): ItemText {
  if (sidecar === "starting") {
    return { text: "$(loading~spin) orch: starting", tooltip: "Starting the orch sidecar…" };
  }
  if (sidecar === "restarting") {
    return {
      text: "$(loading~spin) orch: restarting",
      tooltip: "The orch sidecar exited; restarting it. See Orch: Show Sidecar Output.",
      severity: "warning",
    };
  }
  if (sidecar === "stopped") {
    return {
      text: "$(error) orch: sidecar stopped",
      tooltip: "The orch sidecar is not running. Click to see its output; run Orch: Restart Sidecar to try again.",
      severity: "error",
    };
  }
  if (config && configHasErrors(config)) {
    const lines = config.problems.slice(0, 8).map(configProblemText);
    return {
      text: "$(error) orch.toml has errors",
      tooltip: `orch.toml has errors; orch uses none of it until they are fixed:\n${lines.join("\n")}\nClick to open the first one.`,
      severity: "error",
    };
  }
  if (!machine) {
    return { text: "$(vm) orch", tooltip: "Waiting for the sidecar's first status…" };
  }
  const lines = [`Machine ${machine.name} (${machine.kind}): ${machine.state}`];
  if (machine.address) {
    lines.push(`Address: ${machine.address}`);
  }
  if (machine.uptime_s) {
    lines.push(`Up for ${formatDuration(machine.uptime_s)}`);
  }
  if (machine.instance_type) {
    lines.push(costLine(machine));
  }
  if (machine.detail) {
    lines.push(machine.detail);
  }
  // Cloud machines (codespaces) report what they are and what they cost.
  if (machine.machine_type) {
    lines.push(`Type: ${machine.machine_type}`);
  }
  if (machine.idle_timeout_minutes !== null) {
    lines.push(`Suspends after ${machine.idle_timeout_minutes} min idle (running jobs do not count)`);
  }
  let cost = "";
  if (machine.price_per_hour !== null) {
    const since = machine.cost_so_far !== null ? `, $${machine.cost_so_far.toFixed(2)} since it started` : "";
    lines.push(`Cost: $${machine.price_per_hour.toFixed(2)}/h${since}`);
    cost = ` · $${machine.price_per_hour.toFixed(2)}/h`;
  }
  lines.push("Click to pick the machine (Orch: Select Machine…)");
  if (machine.interruption) {
    // A spot interruption notice: the machine goes away within two minutes.
    return {
      text: `$(warning) ${machine.name}: spot interruption at ${machine.interruption.time}${cost}`,
      tooltip: lines.join("\n"),
      severity: "warning",
    };
  }
  return {
    text: `${MACHINE_ICON[machine.state] ?? "$(vm)"} ${machine.name}: ${machine.state}${cost}`,
    tooltip: lines.join("\n"),
  };
}

export function syncItem(sync: SyncStatus | undefined): ItemText {
  if (!sync) {
    return { text: "$(sync) sync", tooltip: "Sync state not known yet" };
  }
  const last = sync.last_sync ? `\nLast sync: ${formatWhen(sync.last_sync)}` : "";
  switch (sync.state) {
    case "syncing":
      return { text: "$(sync~spin) syncing", tooltip: `Syncing files to the machine${last}` };
    case "conflict": {
      const n = sync.conflicts.length;
      const files = sync.conflicts
        .slice(0, 10)
        .map((c) => `${c.path} (theirs: ${c.remote_copy})`)
        .join("\n");
      return {
        text: `$(warning) sync: ${n} conflict${n === 1 ? "" : "s"}`,
        tooltip: `Files changed on both sides:\n${files}${last}`,
        severity: "warning",
      };
    }
    case "paused":
      return { text: "$(debug-pause) sync paused", tooltip: `Sync is paused${last}` };
    case "failed":
      return {
        text: "$(error) sync failed",
        tooltip: `Sync failed: ${sync.detail ?? "see orch sync status"}${last}`,
        severity: "error",
      };
    case "off":
      return { text: "$(circle-slash) sync off", tooltip: "Sync is off. Click to start it." };
    default:
      return { text: "$(sync) sync idle", tooltip: `Sync is watching for changes${last}` };
  }
}

/** The job that ended last, by its end time (falling back to list order). */
export function lastEnded(jobs: readonly JobInfo[]): JobInfo | undefined {
  let best: JobInfo | undefined;
  for (const job of jobs) {
    if (!isEnded(job)) {
      continue;
    }
    if (!best || (job.ended ?? "") >= (best.ended ?? "")) {
      best = job;
    }
  }
  return best;
}

const END_MARK: Record<string, string> = {
  succeeded: "$(pass)",
  failed: "$(error)",
  stopped: "$(debug-stop)",
  lost: "$(question)",
  interrupted: "$(zap)",
};

/** Items of a queue not done yet: waiting plus being run by a worker. */
export function queueLeft(queue: QueueStatus): number {
  return queue.depth + queue.in_flight;
}

/** A queue has work or workers: its items or its tasks still count as running. */
export function queueActive(queue: QueueStatus): boolean {
  return queueLeft(queue) > 0 || queue.tasks_running > 0;
}

/** "12 queued · 3 in flight · 30 done · 1 failed · 4 tasks" for a queue's tree row. */
export function describeQueue(queue: QueueStatus): string {
  const tasks = `${queue.tasks_running} task${queue.tasks_running === 1 ? "" : "s"}`;
  const parts = [`${queue.depth} queued`, `${queue.in_flight} in flight`, `${queue.done} done`];
  if (queue.failed) {
    parts.push(`${queue.failed} failed`);
  }
  parts.push(queue.tasks_desired !== queue.tasks_running ? `${tasks} (${queue.tasks_desired} wanted)` : tasks);
  return parts.join(" · ");
}

/** The queue's counts spelled out, one per line (tooltips). */
export function queueTooltip(queue: QueueStatus): string {
  return [
    `Queue ${queue.queue} on backend ${queue.backend}`,
    `Queued: ${queue.depth}`,
    `In flight (a worker runs them): ${queue.in_flight}`,
    `Done: ${queue.done} of ${queue.submitted} submitted`,
    `Failed (in the dead-letter queue): ${queue.failed}`,
    `Worker tasks: ${queue.tasks_running} running, ${queue.tasks_desired} wanted`,
  ].join("\n");
}

export function jobsItem(jobs: readonly JobInfo[] | undefined, queues: readonly QueueStatus[] = []): ItemText {
  const all = jobs ?? [];
  const running = all.filter(isRunning);
  const lines = all.map((j) => `${j.name}: ${describeJob(j)}`);
  lines.push(...queues.map((q) => `queue ${q.queue} (${q.backend}): ${describeQueue(q)}`));
  const tooltip = lines.length ? lines.join("\n") : "No jobs. Run one with Orch: Run Job…";
  const left = queues.reduce((n, q) => n + queueLeft(q), 0);
  if (running.length || queues.some(queueActive)) {
    const items = left ? ` · ${left} queued` : "";
    return { text: `$(loading~spin) ${running.length} running${items}`, tooltip };
  }
  const last = lastEnded(all);
  if (last) {
    const exit = last.state === "failed" && last.exit_code !== null && last.exit_code !== undefined;
    const code = exit ? ` (exit ${last.exit_code})` : "";
    return {
      text: `$(check) 0 running · ${last.name} ${END_MARK[last.state]} ${last.state}${code}`,
      tooltip,
      severity: last.state === "failed" || last.state === "interrupted" ? "warning" : undefined,
    };
  }
  return { text: "$(check) 0 running", tooltip };
}

export function describeJob(job: JobInfo): string {
  const parts: string[] = [job.state];
  if (job.backend && job.backend !== "tmux") {
    parts[0] = `${job.state} on ${job.backend}`;
  }
  if (job.exit_code !== null && job.exit_code !== undefined && isEnded(job)) {
    parts.push(`exit ${job.exit_code}`);
  }
  const d = formatDuration(job.duration_s);
  if (d) {
    parts.push(d);
  }
  if (isRunning(job)) {
    const mem = formatBytes(job.rss_bytes);
    if (mem) {
      parts.push(mem);
    }
    if (job.cpu_percent !== null && job.cpu_percent !== undefined) {
      parts.push(`${job.cpu_percent.toFixed(0)}% CPU`);
    }
  }
  if (job.cost_usd !== null && job.cost_usd !== undefined) {
    parts.push(`$${job.cost_usd.toFixed(job.cost_usd < 1 ? 4 : 2)}`);
  }
  return parts.join(", ");
}

/** A job that started and ended between two statuses counts if it ended this recently. */
const UNSEEN_END_WINDOW_MS = 120_000;

/**
 * Jobs that have ended in `after` and were running in `before`, or were restarted since, or
 * (a quick failure between two pushes) were not in `before` at all and ended just now.
 */
export function newlyEnded(
  before: readonly JobInfo[] | undefined,
  after: readonly JobInfo[],
  now: number = Date.now(),
): JobInfo[] {
  if (!before) {
    return []; // the first status: what ended earlier is old news
  }
  const previous = new Map(before.map((j) => [j.name, j]));
  return after.filter((job) => {
    if (!isEnded(job)) {
      return false;
    }
    const was = previous.get(job.name);
    if (!was) {
      const ended = job.ended ? Date.parse(job.ended) : NaN;
      return Number.isFinite(ended) && now - ended < UNSEEN_END_WINDOW_MS;
    }
    return isRunning(was) || was.started !== job.started;
  });
}

export function jobEndedMessage(job: JobInfo): string {
  const d = formatDuration(job.duration_s);
  const after = d ? ` after ${d}` : "";
  switch (job.state) {
    case "succeeded":
      return `Job ${job.name} succeeded${after}.`;
    case "failed":
      return `Job ${job.name} failed with exit code ${job.exit_code ?? "?"}${after}.`;
    case "stopped":
      return `Job ${job.name} was stopped${after}.`;
    case "interrupted":
      return `Job ${job.name} was interrupted${after}: AWS reclaimed its Fargate Spot capacity. Restart it to run it again.`;
    default:
      return `Job ${job.name} was lost: the machine no longer knows it.`;
  }
}

/** A name for a job from its command: the program's base name, made unique among `taken`. */
export function suggestJobName(command: string, taken: Iterable<string>): string {
  const words = command.trim().split(/\s+/).filter((w) => !/^[A-Z_][A-Z0-9_]*=/.test(w));
  let word = words[0] ?? "job";
  // `python train.py` names the job after the script, not the interpreter.
  if (/^python[0-9.]*$/.test(word) || word === "uv" || word === "bash" || word === "sh") {
    word = words.slice(1).find((w) => !w.startsWith("-")) ?? word;
  }
  let base = word.split("/").pop() ?? "job";
  base = base.replace(/\.[A-Za-z0-9]+$/, "").replace(/[^A-Za-z0-9_-]+/g, "-");
  base = base.replace(/^-+|-+$/g, "").toLowerCase() || "job";
  const used = new Set(taken);
  if (!used.has(base)) {
    return base;
  }
  for (let i = 2; ; i++) {
    if (!used.has(`${base}-${i}`)) {
      return `${base}-${i}`;
    }
  }
}

/** Job names the sidecar accepts (tmux session and log folder names). */
export function validateJobName(name: string): string | undefined {
  if (!name.trim()) {
    return "Give the job a name.";
  }
  // The sidecar's rule (remote_config/jobs.py JOB_NAME_RE); it checks again.
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/.test(name)) {
    return "Use letters, digits, '-', '_' or '.', not starting with '-' or '.' (at most 64).";
  }
  return undefined;
}

export function validatePort(text: string, optional = false): string | undefined {
  if (optional && !text.trim()) {
    return undefined;
  }
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    return "Enter a port number from 1 to 65535.";
  }
  return undefined;
}

export function statusSummary(status: OrchStatus): string {
  const m = status.machine;
  const running = status.jobs.filter(isRunning).length;
  const parts = [
    `Machine ${m.name} (${m.kind}) is ${m.state}${m.address ? ` at ${m.address}` : ""}.`,
    `Jobs: ${running} running, ${status.jobs.length} in all.`,
    ...status.queues.map((q) => `Queue ${q.queue} (${q.backend}): ${describeQueue(q)}.`),
    `Sync: ${status.sync.state}${status.sync.conflicts.length ? ` (${status.sync.conflicts.length} conflicts)` : ""}.`,
    `Ports: ${status.ports.length ? status.ports.map((p) => `${p.local_port}→${p.remote_port}`).join(", ") : "none"}.`,
  ];
  return parts.join(" ");
}

/** The toast text for a failed request: what failed and what to do. */
export function requestErrorMessage(
  action: string,
  error: { message?: string; code?: number; data?: unknown },
): string {
  const data = error.data as OrchErrorData | undefined;
  const problems = data?.problems ?? [];
  if (problems.length) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : "";
    const n = problems.length;
    return `Orch: ${action} failed: orch.toml has ${n} problem${n === 1 ? "" : "s"}. ${configProblemText(problems[0]).replace(/\.?\s*$/, "")}${more}.`;
  }
  const message = (error.message ?? "unknown error").replace(/\.?\s*$/, "");
  if (data?.action) {
    return `Orch: ${capitalized(message)}.`; // the button says what to do
  }
  const hint = data?.hint
    ? ` ${data.hint.replace(/\.?\s*$/, ".")}`
    : " See Orch: Show Sidecar Output for details.";
  return `Orch: ${action} failed: ${message}.${hint}`;
}

export function sshConfigMessage(result: SshConfigResult): string {
  const { hosts, path } = result;
  if (!hosts.length) {
    const why = result.skipped.length ? ` (${result.skipped.join("; ")})` : "";
    return `Orch: no machine could be written to ${path}${why}. Run Orch: Up first.`;
  }
  const included =
    result.include === "top" ? ` ${result.user_config} includes it.` : ` Add \`Include ${path}\` to ${result.user_config}.`;
  return (
    `Orch: wrote SSH host${hosts.length === 1 ? "" : "s"} ${hosts.join(", ")} to ${path}.${included} ` +
    `Connect with \`ssh ${hosts[0]}\` or Remote-SSH.`
  );
}

/** The error after attaching the debugger failed for good (shown with Retry / Show Logs). */
export function attachFailureMessage(job: string, reason: string): string {
  const why = reason.replace(/\.?\s*$/, "");
  return `Orch: could not attach the debugger to job ${job}: ${why}. The job may still wait for a debugger.`;
}

function capitalized(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The buttons a failed request's toast offers, by what the error says can be done. */
export function errorActions(data: OrchErrorData | undefined): string[] {
  if (data?.problems?.length) {
    return ["Open orch.toml"];
  }
  switch (data?.action) {
    case "machine.up":
      return ["Start Machine"];
    case "open.file":
      return [data.target?.endsWith(".log") ? "Open Log" : "Open File", "Show Output"];
    default:
      return ["Show Output"];
  }
}
