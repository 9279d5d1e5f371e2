/**
 * The sidecar protocol (docs/protocol.md): command names, their arguments and results, and the
 * notifications the sidecar pushes. Result models come from protocol.generated.ts (generated
 * from the sidecar's pydantic models); nothing here holds logic.
 */

import type * as wire from "./protocol.generated";

// The models the sidecar sends are generated from its pydantic models (sidecar/results.py)
// by scripts/gen_protocol.sh; CI fails when protocol.generated.ts drifts from them.
export type MachineStatus = wire.MachineInfo;
export type MachineCapabilities = wire.Capabilities;
export type JobInfo = wire.JobInfo;
export type SyncConflict = wire.SyncConflict;
export type SyncStatus = wire.SyncStatus;
export type SshConfigResult = wire.SshConfigResult;
export type PortForward = wire.PortForwardInfo;
/** A job backend's queue (Fargate queue mode) as `orch status` counts it. */
export type QueueStatus = wire.QueueStatus;
/** The `orch/status` notification and the `orch.status` result. */
export type OrchStatus = wire.OrchStatus;
export type MachineState = MachineStatus["state"];
export type JobState = JobInfo["state"];
export type SyncState = SyncStatus["state"];
export type PortState = PortForward["state"];
export type ConfigProblem = wire.ConfigProblemInfo;
export type ConfigState = wire.ConfigState;
export type ConfigInitResult = wire.ConfigInitResult;
export type IdleStatus = wire.IdleStatus;
export type CostStatus = wire.CostStatus;
/** `orch.machine.list`: every machine of orch.toml with its state and price. */
export type MachineList = wire.MachineList;
/** `orch.machine.terminatePlan`: what terminating destroys and would lose. */
export type TerminatePlan = wire.TerminatePlan;

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
  /** down, terminate: go on even while jobs run there. */
  force?: boolean;
}
export interface SelectMachineArgs {
  /** "" for the project's default machine. */
  machine: string;
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
export type DebugSession = Omit<wire.DebugSession, "configuration"> & {
  configuration: DebugAttachConfig;
};
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
  /** The machine's remote_port reaches this computer's local_port (RemoteForward). */
  reverse?: boolean;
}
export interface PortRemoveArgs {
  /** The local port; with `reverse`, the machine's port. */
  local_port: number;
  reverse?: boolean;
}
export type NoArgs = Record<string, never>;
export interface StatusArgs {
  /** Read anew instead of answering from a read under a second old. */
  fresh?: boolean;
}

/** `orch.profile.run`: one GPU profiling session (docs/gpu.md, `orch profile`). */
export interface ProfileArgs {
  model?: "birefnet" | "sam2";
  requests?: number;
  size?: number;
  random_weights?: boolean;
  py_spy?: boolean;
}
export type ProfileResult = wire.ProfileResult;

/** Every command the sidecar answers, with its argument and result types. */
export interface Commands {
  "orch.machine.up": [MachineArgs, MachineStatus];
  "orch.machine.down": [MachineArgs, MachineStatus];
  "orch.machine.status": [MachineArgs, MachineStatus];
  "orch.machine.terminate": [MachineArgs, MachineStatus];
  "orch.machine.terminatePlan": [{ machine?: string }, TerminatePlan];
  "orch.machine.list": [NoArgs, MachineList];
  "orch.machine.select": [SelectMachineArgs, MachineStatus];
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
  "orch.profile.run": [ProfileArgs, ProfileResult];
  "orch.status": [StatusArgs, OrchStatus];
  "orch.config.init": [NoArgs, ConfigInitResult];
  "orch.idle.keep": [MachineArgs, IdleStatus | null];
}

export type CommandName = keyof Commands;
export type ArgsOf<C extends CommandName> = Commands[C][0];
export type ResultOf<C extends CommandName> = Commands[C][1];

export const STATUS_NOTIFICATION = "orch/status";
export const LOG_NOTIFICATION = "orch/log";

/** What a button may do about an error (`OrchErrorData.action`). */
export type ErrorAction = "machine.up" | "open.file";

/** `data` of a JSON-RPC error raised by an orch error on the server: `ErrorData` in
 * sidecar/results.py, sent without its null fields (hence the optional ones here). */
export interface OrchErrorData {
  kind: string;
  /** What to run in a terminal. */
  hint?: string;
  /** What a button can do instead, acting on `target` (a machine, a file). */
  action?: ErrorAction;
  target?: string;
  /** ConfigFileError: each problem of orch.toml. */
  problems?: ConfigProblem[];
}
