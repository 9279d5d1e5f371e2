import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { orchCliFor, resolveInterpreter, sidecarCommand } from "../src/common/interpreter";
import { readSettings } from "../src/common/settings";

describe("interpreter resolution", () => {
  it("prefers the orch.python setting and does not ask the Python extension", async () => {
    let asked = false;
    const result = await resolveInterpreter("/venv/bin/python", () => {
      asked = true;
      return Promise.resolve("/other/python");
    });
    assert.deepEqual(result, { path: "/venv/bin/python", source: "setting" });
    assert.equal(asked, false);
  });

  it("falls back to the Python extension's active interpreter", async () => {
    const result = await resolveInterpreter("  ", () => Promise.resolve("/usr/local/bin/python3.12"));
    assert.deepEqual(result, { path: "/usr/local/bin/python3.12", source: "pythonExtension" });
  });

  it("falls back to python3 when there is no Python extension or it fails", async () => {
    assert.deepEqual(await resolveInterpreter("", () => Promise.resolve(undefined)), {
      path: "python3",
      source: "default",
    });
    assert.deepEqual(await resolveInterpreter("", () => Promise.reject(new Error("not ready"))), {
      path: "python3",
      source: "default",
    });
  });

  it("starts the sidecar as a module", () => {
    assert.deepEqual(sidecarCommand("/v/bin/python"), { command: "/v/bin/python", args: ["-m", "sidecar"] });
  });

  it("finds the orch CLI next to a venv interpreter, else on PATH", () => {
    assert.equal(orchCliFor("/v/bin/python", (p) => p === "/v/bin/orch"), "/v/bin/orch");
    assert.equal(orchCliFor("/usr/bin/python3", () => false), "orch");
    assert.equal(orchCliFor("python3", () => true), "orch");
  });
});

describe("settings", () => {
  const from = (values: Record<string, unknown>) => <T>(key: string) => values[key] as T | undefined;

  it("reads typed settings with defaults", () => {
    assert.deepEqual(readSettings(from({})), {
      python: "",
      machine: "",
      logLevel: "info",
      jobLogsView: "outputChannel",
      notifyOnJobEnd: true,
      trace: "off",
    });
  });

  it("rejects values outside a literal union and expands ${workspaceFolder}", () => {
    const s = readSettings(
      from({ python: "${workspaceFolder}/.venv/bin/python", logLevel: "loud", "jobLogs.showIn": "terminal" }),
      "/w",
    );
    assert.equal(s.python, "/w/.venv/bin/python");
    assert.equal(s.logLevel, "info");
    assert.equal(s.jobLogsView, "terminal");
  });
});
