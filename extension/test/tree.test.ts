import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildTree } from "../src/common/treeModel";
import { job, port as portInfo, queue, status } from "./fixtures";

describe("tree model", () => {
  it("waits for the sidecar before the first status", () => {
    const roots = buildTree(undefined);
    assert.equal(roots.length, 1);
    assert.equal(roots[0].kind, "empty");
  });

  it("has Machines, Jobs and Ports groups", () => {
    const roots = buildTree(status());
    assert.deepEqual(
      roots.map((r) => r.label),
      ["Machines", "Jobs", "Ports"],
    );
    const machine = roots[0].children![0];
    assert.equal(machine.label, "local");
    assert.equal(machine.description, "running"); // the kind only when it differs from the name
    assert.equal(machine.contextValue, "machine.running.selected");
    assert.equal(roots[1].children![0].label, "No jobs yet");
    assert.equal(roots[2].children![0].label, "No forwarded ports");
  });

  it("shows reverse forwards with their direction and names them by the machine's port", () => {
    const roots = buildTree(
      status({
        ports: [
          portInfo({ local_port: 8888, remote_port: 8000 }),
          portInfo({ local_port: 8001, remote_port: 9001, state: "reconnecting", reverse: true }),
          portInfo({ local_port: 55433, remote_port: 55433, state: "direct" }),
        ],
      }),
    );
    const ports = roots[2].children!;
    assert.deepEqual(
      ports.map((p) => [p.key, p.description]),
      [
        ["8888", "→ 127.0.0.1:8000 · active"],
        ["R9001", "← 127.0.0.1:9001 · reconnecting"],
        ["55433", "→ 127.0.0.1:55433 · direct"],
      ],
    );
  });

  it("lists running jobs first, then the newest, with context values for menus", () => {
    const roots = buildTree(
      status({
        jobs: [
          job("old", { state: "succeeded", started: "2026-11-22T01:00:00Z", exit_code: 0 }),
          job("newer", { state: "failed", started: "2026-11-22T02:00:00Z", exit_code: 1 }),
          job("live", { started: "2026-11-22T00:00:00Z" }),
        ],
      }),
    );
    const jobs = roots[1].children!;
    assert.deepEqual(
      jobs.map((j) => j.label),
      ["live", "newer", "old"],
    );
    assert.deepEqual(
      jobs.map((j) => j.contextValue),
      ["job.running", "job.ended", "job.ended"],
    );
    assert.equal(jobs[0].icon, "loading~spin");
    assert.equal(jobs[1].description, "failed, exit 1, 3.2s");
    assert.equal(roots[1].description, "1 running");
  });

  it("lists forwarded ports with their key", () => {
    const roots = buildTree(
      status({ ports: [portInfo()] }),
    );
    const port = roots[2].children![0];
    assert.equal(port.label, "localhost:8888");
    assert.equal(port.description, "→ 127.0.0.1:8000 · active");
    assert.equal(port.key, "8888");
    assert.equal(port.contextValue, "port");
  });

  it("shows Fargate jobs beside tmux jobs, with their backend and cost, and no attach", () => {
    const roots = buildTree(
      status({
        jobs: [
          job("sweep", { backend: "batch", cost_usd: 0.0123, rss_bytes: null, cpu_percent: null }),
          job("spot", { backend: "batch", state: "interrupted", exit_code: 143, started: "2026-11-22T00:00:00Z" }),
          job("local"),
        ],
      }),
    );
    const jobs = roots[1].children!;
    assert.deepEqual(
      jobs.map((j) => [j.label, j.contextValue, j.icon]),
      [
        ["sweep", "job.running.service", "loading~spin"],
        ["local", "job.running", "loading~spin"],
        ["spot", "job.ended", "zap"],
      ],
    );
    assert.equal(jobs[0].description, "running on batch, 3.2s, $0.0123");
    assert.equal(jobs[2].description, "interrupted on batch, exit 143, 3.2s");
    assert.equal(roots[1].description, "2 running");
  });

  it("has a Queues group only where a backend has queued something", () => {
    assert.ok(!buildTree(status()).some((r) => r.label === "Queues"));
    const roots = buildTree(
      status({
        queues: [
          queue({ depth: 12, in_flight: 3, done: 30, failed: 1, submitted: 46, tasks_running: 3, tasks_desired: 4 }),
          queue({ backend: "spot", queue: "proj-spot", done: 50, submitted: 50 }),
          queue({ backend: "old", queue: "proj-old", done: 9, failed: 1, submitted: 10 }),
        ],
      }),
    );
    assert.deepEqual(
      roots.map((r) => r.label),
      ["Machines", "Jobs", "Queues", "Ports"],
    );
    const group = roots[2];
    assert.equal(group.description, "1 busy");
    const [busy, done, failed] = group.children!;
    assert.equal(busy.id, "queue:batch:proj-batch");
    assert.equal(busy.description, "12 queued · 3 in flight · 30 done · 1 failed · 3 tasks (4 wanted)");
    assert.equal(busy.icon, "loading~spin");
    assert.match(busy.tooltip!, /Failed \(in the dead-letter queue\): 1/);
    assert.match(busy.tooltip!, /Done: 30 of 46 submitted/);
    assert.equal(done.description, "0 queued · 0 in flight · 50 done · 0 tasks");
    assert.equal(done.icon, "pass");
    assert.equal(failed.icon, "warning");
  });

  it("marks a stopped machine so Up shows in its menu", () => {
    const roots = buildTree(status({ machine: { ...status().machine, state: "stopped" } }));
    assert.equal(roots[0].children![0].contextValue, "machine.stopped.selected");
  });
});
