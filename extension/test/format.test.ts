import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  formatBytes,
  formatDuration,
  jobEndedMessage,
  jobsItem,
  costLine,
  machineItem,
  newlyEnded,
  requestErrorMessage,
  sshConfigMessage,
  statusSummary,
  suggestJobName,
  syncItem,
  validateJobName,
  validatePort,
} from "../src/common/format";
import { job, port, queue, sshResult, status, sync } from "./fixtures";

describe("machine item", () => {
  it("shows the machine's name and state once the sidecar runs", () => {
    const item = machineItem("running", status().machine);
    assert.equal(item.text, "$(vm-running) local: running");
    assert.match(item.tooltip, /127\.0\.0\.1:2222/);
    assert.equal(item.severity, undefined);
  });

  it("warns of a spot interruption notice", () => {
    const machine = {
      ...status().machine,
      name: "big",
      kind: "ec2",
      detail: "spot interruption: AWS will stop the machine at 2026-12-06T05:02:00Z (2-minute notice)",
      interruption: { action: "stop", time: "2026-12-06T05:02:00Z", seen_at: 1, boot: "b" },
    };
    const item = machineItem("running", machine);
    assert.equal(item.text, "$(warning) big: spot interruption at 2026-12-06T05:02:00Z");
    assert.equal(item.severity, "warning");
    assert.match(item.tooltip, /AWS will stop the machine/);
  });

  it("shows a codespace's type, idle timeout and cost", () => {
    const machine = {
      ...status().machine,
      name: "cs",
      kind: "codespaces",
      machine_type: "standardLinux32gb",
      idle_timeout_minutes: 30,
      price_per_hour: 0.36,
      cost_so_far: 0.12,
    };
    const item = machineItem("running", machine);
    assert.equal(item.text, "$(vm-running) cs: running · $0.36/h");
    assert.match(item.tooltip, /Type: standardLinux32gb/);
    assert.match(item.tooltip, /Suspends after 30 min idle/);
    assert.match(item.tooltip, /\$0\.12 since it started/);
  });

  it("spins while the machine starts", () => {
    const item = machineItem("running", { ...status().machine, state: "starting" });
    assert.equal(item.text, "$(loading~spin) local: starting");
  });

  it("says when the sidecar itself is starting, restarting or stopped", () => {
    assert.equal(machineItem("starting", undefined).text, "$(loading~spin) orch: starting");
    assert.equal(machineItem("restarting", undefined).severity, "warning");
    const stopped = machineItem("stopped", status().machine);
    assert.equal(stopped.text, "$(error) orch: sidecar stopped");
    assert.equal(stopped.severity, "error");
    assert.match(stopped.tooltip, /Restart Sidecar/);
  });
});

describe("cloud machine cost", () => {
  it("shows type, market, $/h and cost since start in the tooltip", () => {
    const machine = {
      ...status().machine,
      kind: "ec2",
      instance_type: "g4dn.xlarge",
      market: "spot" as const,
      price_per_hour: 0.1578,
      cost_so_far: 1.234,
    };
    const item = machineItem("running", machine);
    assert.match(item.tooltip, /g4dn\.xlarge spot: \$0\.1578\/h, \$1\.23 since start/);
    assert.equal(costLine({ ...machine, price_per_hour: null }), "g4dn.xlarge spot: price unknown");
  });

  it("says nothing about cost for a machine without a type", () => {
    assert.doesNotMatch(machineItem("running", status().machine).tooltip, /\/h/);
  });
});

describe("jobs item", () => {
  it("shows 0 running with no jobs", () => {
    assert.equal(jobsItem([]).text, "$(check) 0 running");
    assert.equal(jobsItem(undefined).text, "$(check) 0 running");
  });

  it("counts running jobs and spins", () => {
    const item = jobsItem([job("a"), job("b"), job("c", { state: "failed", exit_code: 1 })]);
    assert.equal(item.text, "$(loading~spin) 2 running");
    assert.match(item.tooltip, /c: failed, exit 1/);
  });

  it("counts queued items and spins while a queue has work or workers", () => {
    const busy = queue({ depth: 40, in_flight: 4, done: 6, submitted: 50, tasks_running: 4, tasks_desired: 4 });
    const item = jobsItem([job("a", { state: "succeeded", exit_code: 0, ended: "2026-11-22T01:00:09Z" })], [busy]);
    assert.equal(item.text, "$(loading~spin) 0 running · 44 queued");
    assert.match(item.tooltip, /queue proj-batch \(batch\): 40 queued · 4 in flight · 6 done · 4 tasks/);
    // Items all taken but the workers still run: still busy, nothing queued.
    const draining = jobsItem([], [queue({ done: 50, submitted: 50, tasks_running: 2, tasks_desired: 0 })]);
    assert.equal(draining.text, "$(loading~spin) 0 running");
    const idle = jobsItem([], [queue({ done: 50, submitted: 50 })]);
    assert.equal(idle.text, "$(check) 0 running");
  });

  it("counts Fargate jobs like tmux jobs and marks a Spot interruption", () => {
    const item = jobsItem([job("a", { backend: "batch" }), job("b")]);
    assert.equal(item.text, "$(loading~spin) 2 running");
    assert.match(item.tooltip, /a: running on batch/);
    const spot = job("s", { backend: "batch", state: "interrupted", exit_code: 143, ended: "2026-11-22T01:00:09Z" });
    assert.equal(jobsItem([spot]).text, "$(check) 0 running · s $(zap) interrupted");
    assert.match(jobEndedMessage(spot), /interrupted after 3\.2s: AWS reclaimed its Fargate Spot capacity/);
  });

  it("shows the job that ended last once none runs", () => {
    const jobs = [
      job("old", { state: "failed", ended: "2026-11-22T01:00:05Z", exit_code: 2 }),
      job("new", { state: "succeeded", ended: "2026-11-22T01:00:09Z", exit_code: 0 }),
    ];
    assert.equal(jobsItem(jobs).text, "$(check) 0 running · new $(pass) succeeded");
  });
});

describe("sync item", () => {
  it("renders each state", () => {
    assert.equal(syncItem(sync({ state: "idle" })).text, "$(sync) sync idle");
    assert.equal(syncItem(sync({ state: "syncing" })).text, "$(sync~spin) syncing");
    assert.equal(syncItem(sync({ state: "off" })).text, "$(circle-slash) sync off");
    const conflicts = ["a.py", "b.py"].map((path) => ({ path, remote_copy: `${path}.remote`, at: "t" }));
    const conflict = syncItem(sync({ state: "conflict", conflicts }));
    assert.equal(conflict.text, "$(warning) sync: 2 conflicts");
    assert.equal(conflict.severity, "warning");
    assert.match(conflict.tooltip, /a\.py \(theirs: a\.py\.remote\)\nb\.py/);
    const failed = syncItem(sync({ state: "failed", detail: "rsync failed: disk full" }));
    assert.equal(failed.text, "$(error) sync failed");
    assert.equal(failed.severity, "error");
    assert.match(failed.tooltip, /disk full/);
  });
});

describe("job endings", () => {
  it("reports jobs that moved from running to an end state", () => {
    const before = [job("a"), job("b"), job("c", { state: "failed" })];
    const after = [
      job("a", { state: "succeeded", exit_code: 0 }),
      job("b"),
      job("c", { state: "failed" }),
      job("d", { state: "failed" }),
    ];
    assert.deepEqual(
      newlyEnded(before, after).map((j) => j.name),
      ["a"],
    );
  });

  it("reports a job restarted and finished between two notifications", () => {
    const before = [job("a", { state: "succeeded", started: "2026-11-22T01:00:00Z" })];
    const after = [job("a", { state: "succeeded", started: "2026-11-22T01:05:00Z" })];
    assert.deepEqual(newlyEnded(before, after).map((j) => j.name), ["a"]);
  });

  it("words the message by outcome", () => {
    assert.equal(jobEndedMessage(job("t", { state: "succeeded", duration_s: 4 })), "Job t succeeded after 4.0s.");
    assert.equal(
      jobEndedMessage(job("t", { state: "failed", exit_code: 3, duration_s: 75 })),
      "Job t failed with exit code 3 after 1m 15s.",
    );
  });
});

describe("units", () => {
  it("formats durations and sizes", () => {
    assert.equal(formatDuration(null), "");
    assert.equal(formatDuration(3.25), "3.3s");
    assert.equal(formatDuration(42), "42s");
    assert.equal(formatDuration(3 * 3600 + 120), "3h 2m");
    assert.equal(formatBytes(512), "512 B");
    assert.equal(formatBytes(10 * 1024 * 1024), "10.0 MiB");
  });
});

describe("job names", () => {
  it("names a job after its script", () => {
    assert.equal(suggestJobName("python train.py --epochs 3", []), "train");
    assert.equal(suggestJobName("CUDA_VISIBLE_DEVICES=0 python -u scripts/eval.py", []), "eval");
    assert.equal(suggestJobName("./run-all.sh", []), "run-all");
    assert.equal(suggestJobName("echo hello", []), "echo");
    assert.equal(suggestJobName("   ", []), "job");
  });

  it("avoids names already taken", () => {
    assert.equal(suggestJobName("python train.py", ["train", "train-2"]), "train-3");
  });

  it("validates names and ports", () => {
    assert.equal(validateJobName("train-1.b"), undefined);
    assert.ok(validateJobName(""));
    assert.ok(validateJobName("has space"));
    assert.ok(validateJobName("-dash"));
    assert.ok(validateJobName(".hidden"));
    assert.equal(validateJobName("_ok"), undefined);
    assert.equal(validatePort("8888"), undefined);
    assert.ok(validatePort("0"));
    assert.ok(validatePort("70000"));
    assert.ok(validatePort("8.5"));
    assert.equal(validatePort("", true), undefined);
  });
});

describe("messages", () => {
  it("summarises the status", () => {
    const text = statusSummary(
      status({
        jobs: [job("a"), job("b", { state: "succeeded" })],
        ports: [port()],
      }),
    );
    assert.equal(
      text,
      "Machine local (local) is running at 127.0.0.1:2222. Jobs: 1 running, 2 in all. Sync: idle. Ports: 8888→8000.",
    );
    const queued = statusSummary(status({ queues: [queue({ depth: 2, done: 1, submitted: 3 })] }));
    assert.match(queued, /Queue proj-batch \(batch\): 2 queued · 0 in flight · 1 done · 0 tasks\./);
  });

  it("puts the server's hint in error toasts, or points at the output", () => {
    assert.equal(
      requestErrorMessage("Stop Job", { message: "no job named x", data: { kind: "JobNotFound", hint: "Run orch jobs to list jobs" } }),
      "Orch: Stop Job failed: no job named x. Run orch jobs to list jobs.",
    );
    assert.equal(
      requestErrorMessage("Up", { message: "boom." }),
      "Orch: Up failed: boom. See Orch: Show Sidecar Output for details.",
    );
  });
});

describe("ssh config message", () => {
  const base = sshResult({
    path: "/h/.orch/ssh/config",
    hosts: ["orch-local"],
    user_config: "/h/.ssh/config",
    include: "top" as const,
    changed: true,
    warnings: [],
    skipped: [],
  });

  it("names the hosts and how to connect", () => {
    assert.equal(
      sshConfigMessage(base),
      "Orch: wrote SSH host orch-local to /h/.orch/ssh/config. /h/.ssh/config includes it. Connect with `ssh orch-local` or Remote-SSH.",
    );
  });

  it("says what to do when nothing could be written", () => {
    assert.equal(
      sshConfigMessage({ ...base, hosts: [], skipped: ["local: not written (not running)"] }),
      "Orch: no machine could be written to /h/.orch/ssh/config (local: not written (not running)). Run Orch: Up first.",
    );
  });
});
