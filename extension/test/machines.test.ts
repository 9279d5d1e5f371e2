import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  describeMachine,
  effectiveMachine,
  formatPrice,
  machineContext,
  pickItems,
  terminateMessage,
} from "../src/common/machines";
import { machineItem } from "../src/common/format";
import { buildTree } from "../src/common/treeModel";
import type { MachineList, MachineStatus } from "../src/protocol";
import { status } from "./fixtures";

function machine(name: string, overrides: Partial<MachineStatus> = {}): MachineStatus {
  return { ...status().machine, name, kind: name, state: "stopped", address: null, uptime_s: null, ...overrides };
}

const cloud = { creates: true, can_stop: true, can_terminate: true, has_cost: true, has_idle_stop: true, reach: ["proxy_command" as const] };

function list(selected: string | null = "local"): MachineList {
  return {
    default: "local",
    selected,
    machines: [
      machine("box", { kind: "ssh", state: "unknown", detail: "not reachable on its SSH port" }),
      machine("cs", { kind: "codespaces", state: "running", price_per_hour: 0.36, capabilities: cloud }),
      machine("gpu", { kind: "ec2", state: "stopped", price_per_hour: 0.0104, market: "spot", capabilities: cloud }),
      machine("local", { state: "running" }),
    ],
  };
}

describe("machine picker", () => {
  it("lists every machine with kind, state and $/h where it has a cost, the selected first", () => {
    const items = pickItems(list("cs"));
    assert.deepEqual(
      items.map((i) => [i.machine, i.description, i.picked]),
      [
        ["cs", "codespaces · running · $0.36/h", true],
        ["box", "ssh · unknown", false],
        ["gpu", "ec2 · stopped · $0.0104/h", false],
        ["local", "local · running", false],
      ],
    );
    assert.equal(items[0].label, "$(check) cs");
    assert.equal(items[1].detail, "not reachable on its SSH port"); // why it is unknown
    assert.equal(items[3].detail, "project default");
  });

  it("shows the live status of the selected machine over the list's older read", () => {
    const live = machine("local", { state: "stopped" });
    const items = pickItems(list(null), live); // selected null: the default is selected
    assert.equal(items[0].machine, "local");
    assert.equal(items[0].description, "local · stopped");
  });

  it("prices cheap spot machines with enough digits", () => {
    assert.equal(formatPrice(0.0104), "$0.0104/h");
    assert.equal(formatPrice(1.006), "$1.01/h");
    assert.equal(describeMachine(machine("x", { kind: "ssh" })), "ssh · stopped");
  });

  it("a workspace's pick wins over the setting; an empty pick means the default", () => {
    assert.equal(effectiveMachine(undefined, "box"), "box");
    assert.equal(effectiveMachine("cs", "box"), "cs");
    assert.equal(effectiveMachine("", "box"), "");
  });

  it("offers Terminate only where the kind can and something exists", () => {
    const [box, cs, gpu] = list().machines;
    assert.equal(machineContext(box, false), "machine.stopped");
    assert.equal(machineContext(cs, true), "machine.running.terminable.selected");
    assert.equal(machineContext(gpu, false), "machine.stopped.terminable");
    assert.equal(machineContext({ ...gpu, state: "not-created" }, false), "machine.stopped");
  });

  it("the Orch view lists every machine; clicking another one selects it", () => {
    const live = machine("cs", { kind: "codespaces", state: "running", price_per_hour: 0.36, capabilities: cloud, uptime_s: 60 });
    const roots = buildTree(status({ machine: live }), list("cs"));
    const nodes = roots.find((r) => r.label === "Machines")!.children!;
    assert.deepEqual(
      nodes.map((n) => [n.label, n.description]),
      [
        ["box", "ssh · unknown"],
        ["cs", "codespaces · running · $0.36/h · in use"],
        ["gpu", "ec2 · stopped · $0.0104/h"],
        ["local", "running"],
      ],
    );
    assert.equal(nodes[1].command, undefined); // already in use
    assert.deepEqual(nodes[2].command?.arguments, ["gpu"]);
    assert.equal(nodes[2].command?.command, "orch.selectMachine");
    assert.match(nodes[2].tooltip!, /^gpu \(ec2\): stopped\nCost: \$0\.0104\/h\nClick to make it the machine/);
  });

  it("before the list arrives, the view shows the status's machine alone", () => {
    const nodes = buildTree(status())[0].children!;
    assert.deepEqual(
      nodes.map((n) => n.label),
      ["local"],
    );
  });
});

describe("machine status-bar item", () => {
  it("says that a click picks the machine", () => {
    const item = machineItem("running", status().machine);
    assert.match(item.tooltip, /\nClick to pick the machine \(Orch: Select Machine…\)$/);
  });
});

describe("terminate confirmation", () => {
  it("names what is deleted and each thing that would be lost", () => {
    const message = terminateMessage({
      machine: "cs",
      plan: "codespace proj-1 (standardLinux32gb)",
      warnings: ["codespace proj-1 has unpushed commits on feature (2 ahead)"],
    });
    assert.match(message!, /^Terminate cs\? This deletes codespace proj-1 \(standardLinux32gb\)/);
    assert.match(message!, /lost for good/);
    assert.match(message!, /⚠ codespace proj-1 has unpushed commits on feature \(2 ahead\)/);
  });

  it("says nothing when there is nothing to terminate", () => {
    assert.equal(terminateMessage({ machine: "gpu", plan: null, warnings: [] }), undefined);
  });
});
