/** Builders for protocol objects used by the unit tests. */

import type { JobInfo, OrchStatus } from "../src/protocol";

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
    ...overrides,
  };
}

export function status(overrides: Partial<OrchStatus> = {}): OrchStatus {
  return {
    machine: { name: "local", kind: "local", state: "running", address: "127.0.0.1:2222", uptime_s: 12.5 },
    jobs: [],
    sync: { state: "idle", conflicts: [], last_sync: null },
    ports: [],
    config: { file: "/work/project/orch.toml", problems: [] },
    ...overrides,
  };
}
