/** Builders for protocol objects used by the unit tests (complete, as the sidecar sends them). */

import type { JobInfo, OrchStatus, PortForward, QueueStatus, SshConfigResult, SyncStatus } from "../src/protocol";

export function job(name: string, overrides: Partial<JobInfo> = {}): JobInfo {
  return {
    name,
    state: "running",
    started: "2026-11-22T01:00:00Z",
    ended: null,
    exit_code: null,
    rss_bytes: 10 * 1024 * 1024,
    cpu_percent: 12.4,
    duration_s: 3.2,
    backend: "tmux",
    cost_usd: null,
    code_stale: false,
    code_version: null,
    command: "",
    detail: null,
    pid: null,
    mode: null,
    ...overrides,
  };
}

/** A queue of a Fargate backend as `orch status` reports it. */
export function queue(overrides: Partial<QueueStatus> = {}): QueueStatus {
  return {
    backend: "batch",
    queue: "proj-batch",
    depth: 0,
    in_flight: 0,
    done: 0,
    failed: 0,
    submitted: 0,
    tasks_running: 0,
    tasks_desired: 0,
    ...overrides,
  };
}

export function sync(overrides: Partial<SyncStatus> = {}): SyncStatus {
  return {
    state: "idle",
    conflicts: [],
    last_sync: null,
    detail: null,
    full_syncs: 0,
    generation: 0,
    local_dir: null,
    remote_dir: null,
    machine: null,
    owner: null,
    owner_pid: null,
    watcher: null,
    token: null,
    drift: [],
    failures: 0,
    ...overrides,
  };
}

export function port(overrides: Partial<PortForward> = {}): PortForward {
  return {
    local_port: 8888,
    remote_host: "127.0.0.1",
    remote_port: 8000,
    state: "active",
    detail: null,
    from_config: false,
    machine: null,
    owner_pid: null,
    reverse: false,
    ...overrides,
  };
}

export function sshResult(overrides: Partial<SshConfigResult>): SshConfigResult {
  return { backup: null, text: null, ...overrides } as SshConfigResult;
}

export function status(overrides: Partial<OrchStatus> = {}): OrchStatus {
  return {
    machine: {
      name: "local",
      kind: "local",
      state: "running",
      address: "127.0.0.1:2222",
      uptime_s: 12.5,
      pid: null,
      detail: null,
      instance_type: null,
      market: null,
      machine_type: null,
      idle_timeout_minutes: null,
      price_per_hour: null,
      cost_so_far: null,
      price_note: null,
      interruption: null,
      capabilities: { creates: true, can_stop: true, can_terminate: false, has_cost: false, has_idle_stop: false, reach: ["direct"] },
    },
    jobs: [],
    sync: sync(),
    ports: [],
    config: { file: "/work/project/orch.toml", problems: [], machines: ["local"] },
    idle: null,
    cost: null,
    queues: [],
    ...overrides,
  };
}
