/**
 * The sidecar protocol, mirrored from docs/protocol.md: command names, their arguments and
 * results, and the notifications the sidecar pushes. Keep this file and the document in step;
 * nothing here holds logic.
 */

export type MachineState = "running" | "stopped" | "starting" | "stopping" | "unknown" | "not-created";
export type JobState = "running" | "succeeded" | "failed" | "stopped" | "lost";
export type SyncState = "off" | "idle" | "syncing" | "paused" | "conflict" | "failed";
export type PortState = "active" | "reconnecting" | "dead" | "stopped";

export interface MachineStatus {
  name: string;
  kind: string;
  state: MachineState;
  address: string | null;
  uptime_s: number | null;
  pid?: number | null;
  /** A note from the provider (why it is stopped, a stale state it cleaned up…). */
  detail?: string | null;
}

export interface JobInfo {
  name: string;
  state: JobState;
  started: string | null;
  ended: string | null;
  exit_code: number | null;
  rss_bytes: number | null;
  cpu_percent: number | null;
  duration_s: number | null;
  command?: string;
  /** The job runs code older than the synced tree. */
  code_stale?: boolean;
  detail?: string | null;
}

export interface SyncConflict {
  path: string;
  /** Where the remote's version was saved (beside it). */
  remote_copy: string;
  at: string;
}

export interface SyncStatus {
  state: SyncState;
  conflicts: SyncConflict[];
  last_sync?: string | null;
  remote_dir?: string | null;
  detail?: string | null;
}

export interface SshConfigResult {
  /** orch's managed ssh config. */
  path: string;
  hosts: string[];
  /** The user's ssh config that includes it. */
  user_config: string;
  include: "top" | "not-first" | "absent" | "no-file";
  changed: boolean;
  warnings: string[];
  /** Machines not written (not running, no host key). */
  skipped: string[];
}

export interface PortForward {
  local_port: number;
  remote_host: string;
  remote_port: number;
  state: PortState;
  machine?: string | null;
  from_config?: boolean;
  detail?: string | null;
}

/** The `orch/status` notification and the `orch.status` result. */
export interface OrchStatus {
  machine: MachineStatus;
  jobs: JobInfo[];
  sync: SyncStatus;
  ports: PortForward[];
}

/** `orch/log`: a chunk of a followed job's log. */
export interface LogChunk {
  name: string;
  text: string;
}

/** A VS Code debugpy attach configuration, as returned by `orch.debug.attachConfig`. */
export interface DebugAttachConfig {
  type: string;
  request: "attach";
  name: string;
  [key: string]: unknown;
}

/** What the extension sends as `initializationOptions` (read once at start). */
export interface InitializationOptions {
  machine: string | null;
  logLevel: string;
  clientName: "vscode";
}

export interface MachineArgs {
  machine?: string;
  force?: boolean;
}
export interface RunJobArgs {
  name: string;
  command: string | string[];
  env?: Record<string, string>;
  replace?: boolean;
}
export interface JobNameArgs {
  name: string;
}
export interface DebugStartArgs {
  name: string;
  /** `python script.py ARGS` (a leading python is kept; anything else runs under [debug] python). */
  command: string | string[];
  env?: Record<string, string>;
  replace?: boolean;
  snapshot?: boolean;
}
/** `orch.debug.start`'s result: the job waits for a debugger at `configuration`. */
export interface DebugSession {
  name: string;
  machine: string;
  local_port: number;
  remote_port: number;
  remote_root: string;
  configuration: DebugAttachConfig;
}
export interface JobFollowArgs {
  name: string;
  /** Start from the last `tail` lines instead of the beginning of the log. */
  tail?: number;
}
export interface JobLogsArgs {
  name: string;
  tail?: number;
}
export interface JobRemoveArgs {
  name: string;
  purge?: boolean;
}
export interface PortAddArgs {
  local_port: number;
  remote_port?: number;
  remote_host?: string;
}
export interface PortRemoveArgs {
  local_port: number;
}
export type NoArgs = Record<string, never>;

/** Every command the sidecar answers, with its argument and result types. */
export interface Commands {
  "orch.machine.up": [MachineArgs, MachineStatus];
  "orch.machine.down": [MachineArgs, MachineStatus];
  "orch.machine.status": [MachineArgs, MachineStatus];
  "orch.jobs.run": [RunJobArgs, JobInfo];
  "orch.jobs.status": [NoArgs, { jobs: JobInfo[] }];
  "orch.jobs.logs": [JobLogsArgs, LogChunk];
  "orch.jobs.follow": [JobFollowArgs, { name: string }];
  "orch.jobs.unfollow": [JobNameArgs, { name: string }];
  "orch.jobs.stop": [JobNameArgs, JobInfo];
  "orch.jobs.restart": [JobNameArgs, JobInfo];
  "orch.jobs.rm": [JobRemoveArgs, { name: string }];
  "orch.sync.start": [NoArgs, SyncStatus];
  "orch.sync.stop": [NoArgs, SyncStatus];
  "orch.sync.now": [NoArgs, SyncStatus];
  "orch.sync.status": [NoArgs, SyncStatus];
  "orch.ssh.writeConfig": [NoArgs, SshConfigResult];
  "orch.ports.list": [NoArgs, { ports: PortForward[] }];
  "orch.ports.add": [PortAddArgs, PortForward];
  "orch.ports.remove": [PortRemoveArgs, { ports: PortForward[] }];
  "orch.debug.attachConfig": [JobNameArgs, DebugAttachConfig];
  "orch.debug.start": [DebugStartArgs, DebugSession];
  "orch.status": [NoArgs, OrchStatus];
}

export type CommandName = keyof Commands;
export type ArgsOf<C extends CommandName> = Commands[C][0];
export type ResultOf<C extends CommandName> = Commands[C][1];

export const STATUS_NOTIFICATION = "orch/status";
export const LOG_NOTIFICATION = "orch/log";

/** `data` of a JSON-RPC error raised by an orch error on the server. */
export interface OrchErrorData {
  kind: string;
  hint?: string;
}
