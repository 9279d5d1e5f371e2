import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ago,
  attachFailureMessage,
  errorActions,
  formatWhen,
  jobsItem,
  machineItem,
  newlyEnded,
  requestErrorMessage,
} from "../src/common/format";
import { judgePreflight, type Interpreter } from "../src/common/interpreter";
import { buildTree } from "../src/common/treeModel";
import { job, status } from "./fixtures";

const PROBLEMS = [
  { file: "/home/me/project/orch.toml", line: 6, column: 1, path: "machines.gpu.hots", message: "unknown key 'hots'; did you mean 'host'?" },
  { file: "/home/me/project/orch.toml", line: 4, column: 2, path: "machines.gpu.host", message: "required field is missing" },
];

describe("orch.toml problems", () => {
  it("turn the machine item into 'orch.toml has errors' listing them without the path", () => {
    const item = machineItem("running", status().machine, { file: PROBLEMS[0].file, problems: PROBLEMS, machines: [] });
    assert.equal(item.text, "$(error) orch.toml has errors");
    assert.equal(item.severity, "error");
    assert.match(item.tooltip, /line 6: machines\.gpu\.hots: unknown key 'hots'; did you mean 'host'\?/);
    assert.doesNotMatch(item.tooltip, /\/home\/me/);
    assert.equal(machineItem("running", status().machine, { file: null, problems: [], machines: [] }).text, "$(vm-running) local: running");
  });

  it("make the error toast short: the count, the first problem, its line, no absolute path", () => {
    const text = requestErrorMessage("Up", {
      message: "orch.toml has 2 problems:\n  /home/me/project/orch.toml:6: …",
      data: { kind: "ConfigFileError", hint: "fix the lines above", problems: PROBLEMS },
    });
    assert.equal(
      text,
      "Orch: Up failed: orch.toml has 2 problems. line 6: machines.gpu.hots: unknown key 'hots'; did you mean 'host'? (and 1 more).",
    );
    assert.deepEqual(errorActions({ kind: "ConfigFileError", problems: PROBLEMS }), ["Open orch.toml"]);
  });

  it("replace the tree with the problems, each opening its place", () => {
    const roots = buildTree(status({ config: { file: PROBLEMS[0].file, problems: PROBLEMS, machines: [] } }));
    assert.equal(roots.length, 1);
    assert.equal(roots[0].label, "orch.toml has errors");
    assert.equal(roots[0].children![1].label, "line 4: machines.gpu.host: required field is missing");
    assert.deepEqual(roots[0].children![1].command?.arguments, [1]);
    assert.equal(roots[0].children![1].command?.command, "orch.openConfigProblem");
  });
});

describe("first steps", () => {
  it("offer starting the machine and creating orch.toml when there is none", () => {
    const stopped = status({ config: { file: null, problems: [], machines: [] } });
    stopped.machine = { ...stopped.machine, state: "stopped" };
    const [start] = buildTree(stopped);
    assert.equal(start.label, "Get Started");
    assert.deepEqual(
      start.children!.map((c) => [c.label, c.command?.command]),
      [
        ["Start the machine", "orch.up"],
        ["Create orch.toml", "orch.createConfig"],
      ],
    );
    assert.notEqual(buildTree(status())[0].label, "Get Started"); // orch.toml exists
  });
});

describe("errors with actions", () => {
  it("say what is wrong and leave the terminal command to the button", () => {
    const data = { kind: "MachineNotRunning", hint: "start it: orch up", action: "machine.up" as const, target: "local" };
    assert.equal(
      requestErrorMessage("Run Job", { message: "the local machine is not running", data }),
      "Orch: The local machine is not running.",
    );
    assert.deepEqual(errorActions(data), ["Start Machine"]);
    assert.deepEqual(errorActions({ kind: "OrchError", action: "open.file", target: "/x/sync.log" }), ["Open Log", "Show Output"]);
    assert.deepEqual(errorActions({ kind: "NotFound" }), ["Show Output"]);
    assert.match(attachFailureMessage("dbg", "the connection to debugpy closed before it answered."), /^Orch: could not attach the debugger to job dbg: the connection to debugpy closed before it answered\. /);
  });
});

describe("failed jobs", () => {
  it("show their exit code in the status bar", () => {
    const item = jobsItem([job("train", { state: "failed", exit_code: 3, ended: "2026-11-22T01:00:09Z" })]);
    assert.equal(item.text, "$(check) 0 running · train $(error) failed (exit 3)");
    assert.equal(item.severity, "warning");
  });

  it("are notified even when they started and failed between two pushes", () => {
    const now = Date.parse("2026-11-22T01:00:10Z");
    const quick = job("quick", { state: "failed", exit_code: 2, ended: "2026-11-22T01:00:09Z" });
    const old = job("old", { state: "failed", exit_code: 1, ended: "2026-11-21T01:00:00Z" });
    assert.deepEqual(newlyEnded([], [quick, old], now).map((j) => j.name), ["quick"]);
    assert.deepEqual(newlyEnded(undefined, [quick], now), []); // the first status: old news
  });
});

describe("times", () => {
  it("are local clock time and how long ago", () => {
    const now = Date.parse("2026-11-22T12:00:00Z");
    const when = new Date(now - 5 * 60_000);
    const pad = (n: number) => String(n).padStart(2, "0");
    assert.equal(
      formatWhen(when.toISOString(), now),
      `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())} (5 min ago)`,
    );
    assert.equal(ago(3_000), "just now");
    assert.equal(ago(90 * 60_000), "1 h ago");
    assert.equal(formatWhen(null, now), "");
  });
});

describe("the interpreter check", () => {
  const setting: Interpreter = { path: "/venv/bin/python", source: "setting" };
  const ok = (out: object) => ({ stdout: JSON.stringify(out), stderr: "" });

  it("names the setting when the interpreter is missing", () => {
    const result = judgePreflight(setting, { errorCode: "ENOENT", stdout: "", stderr: "" }, "0.1.0");
    assert.deepEqual(result, {
      ok: false,
      problem: "notFound",
      message: "The Python interpreter /venv/bin/python (the orch.python setting) was not found.",
    });
  });

  it("says orch is not installed, and how to install it there", () => {
    const result = judgePreflight(setting, ok({ python: "3.12.1", error: "ModuleNotFoundError: No module named 'sidecar'" }), "0.1.0");
    assert.equal(result.ok, false);
    assert.match(!result.ok ? result.message : "", /^Orch is not installed for \/venv\/bin\/python \(the orch\.python setting\)\. Install it there \(\/venv\/bin\/python -m pip install orch\)/);
  });

  it("refuses an old Python and a different orch version, accepts a matching one", () => {
    assert.equal(judgePreflight(setting, ok({ python: "3.9.2", orch: "0.1.0", missing: [] }), "0.1.0").ok, false);
    const other = judgePreflight(setting, ok({ python: "3.12.1", orch: "0.3.0", missing: [] }), "0.1.2");
    assert.equal(!other.ok && other.problem, "orchVersion");
    assert.deepEqual(judgePreflight(setting, ok({ python: "3.12.1", orch: "0.1.5", missing: [] }), "0.1.0"), {
      ok: true,
      python: "3.12.1",
      orch: "0.1.5",
    });
    const junk = judgePreflight(setting, { stdout: "", stderr: "SyntaxError: invalid syntax" }, "0.1.0");
    assert.equal(!junk.ok && junk.problem, "notPython");
  });
});
