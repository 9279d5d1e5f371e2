/**
 * The Orch tree view's content as plain data: the groups (Machines, Jobs, Queues where a job
 * backend has one, Ports) built from an OrchStatus. The VS Code tree provider only maps these
 * nodes onto TreeItems.
 */

import type { MachineList, MachineStatus, OrchStatus } from "../protocol";
import {
  configHasErrors,
  configProblemText,
  describeJob,
  describeQueue,
  formatWhen,
  isRunning,
  queueActive,
  queueTooltip,
} from "./format";
import { machineContext, machineIcon, machineTooltip, nodeDescription, withLiveStatus } from "./machines";

export type NodeKind = "group" | "machine" | "job" | "queue" | "port" | "empty" | "problem" | "step";

export interface TreeNode {
  id: string;
  kind: NodeKind;
  label: string;
  description?: string;
  tooltip?: string;
  /** A codicon id. */
  icon?: string;
  /** Drives the context menus (package.json `viewItem`). */
  contextValue?: string;
  /** Job name or port number the node's actions act on. */
  key?: string;
  /** What clicking the node runs (first steps, problems). */
  command?: { command: string; title: string; arguments?: unknown[] };
  children?: TreeNode[];
}

const JOB_ICON: Record<string, string> = {
  running: "loading~spin",
  succeeded: "pass",
  failed: "error",
  stopped: "debug-stop",
  lost: "question",
  interrupted: "zap",
};

function queuesGroup(status: OrchStatus): TreeNode[] {
  if (!status.queues.length) {
    return []; // no backend has queued anything: no group
  }
  const children: TreeNode[] = status.queues.map((q) => ({
    id: `queue:${q.backend}:${q.queue}`,
    kind: "queue",
    label: q.queue,
    description: describeQueue(q),
    tooltip: queueTooltip(q),
    icon: queueActive(q) ? "loading~spin" : q.failed ? "warning" : "pass",
    contextValue: "queue",
    key: q.backend,
  }));
  const busy = status.queues.filter(queueActive).length;
  return [{ id: "group:queues", kind: "group", label: "Queues", description: `${busy} busy`, children }];
}

function empty(id: string, label: string): TreeNode {
  return { id, kind: "empty", label };
}

function problemsGroup(status: OrchStatus): TreeNode {
  return {
    id: "group:config",
    kind: "group",
    label: "orch.toml has errors",
    icon: "error",
    description: "fix them to go on",
    children: status.config.problems.map((p, index) => ({
      id: `problem:${index}`,
      kind: "problem",
      label: configProblemText(p),
      tooltip: `${p.file}${p.line ? `:${p.line}` : ""}\n${configProblemText(p)}`,
      icon: "error",
      command: { command: "orch.openConfigProblem", title: "Open the Problem", arguments: [index] },
    })),
  };
}

function firstSteps(status: OrchStatus): TreeNode {
  const steps: TreeNode[] = [];
  if (status.machine.state !== "running") {
    steps.push({
      id: "step:up",
      kind: "step",
      label: "Start the machine",
      description: status.machine.name,
      tooltip: "Orch: Up: start the machine and connect to it",
      icon: "debug-start",
      command: { command: "orch.up", title: "Start the Machine" },
    });
  }
  steps.push({
    id: "step:config",
    kind: "step",
    label: "Create orch.toml",
    description: "optional: machines, sync, ports",
    tooltip: "Write a commented orch.toml into the project folder and open it",
    icon: "new-file",
    command: { command: "orch.createConfig", title: "Create orch.toml" },
  });
  return { id: "group:start", kind: "group", label: "Get Started", children: steps };
}

function machineNode(m: MachineStatus, selected: boolean, several: boolean): TreeNode {
  return {
    id: `machine:${m.name}`,
    kind: "machine",
    label: m.name,
    description: nodeDescription(m, selected && several),
    tooltip: machineTooltip(m, selected),
    icon: machineIcon(m),
    contextValue: machineContext(m, selected),
    key: m.name,
    // Clicking another machine makes it the one the editor acts on.
    command: selected ? undefined : { command: "orch.selectMachine", title: "Use This Machine", arguments: [m.name] },
  };
}

/** The tree from the latest status and, once fetched, `orch.machine.list` (every machine of
 * orch.toml; the status's machine is the selected one and the fresher read of it). */
export function buildTree(status: OrchStatus | undefined, machines?: MachineList): TreeNode[] {
  if (!status) {
    return [empty("waiting", "Waiting for the orch sidecar…")];
  }
  if (configHasErrors(status.config)) {
    return [problemsGroup(status)];
  }
  const live = status.machine;
  const listed = machines?.machines.some((m) => m.name === live.name) ? withLiveStatus(machines, live) : [live];
  const machineGroup: TreeNode = {
    id: "group:machines",
    kind: "group",
    label: "Machines",
    children: listed.map((m) => machineNode(m, m.name === live.name, listed.length > 1)),
  };
  // Running jobs first, then the rest newest first.
  const jobs = [...status.jobs].sort((a, b) => {
    if (isRunning(a) !== isRunning(b)) {
      return isRunning(a) ? -1 : 1;
    }
    return (b.started ?? "").localeCompare(a.started ?? "");
  });
  const jobNodes: TreeNode[] = jobs.map((j) => ({
    id: `job:${j.name}`,
    kind: "job",
    label: j.name,
    description: describeJob(j),
    tooltip: `${j.name}: ${describeJob(j)}${j.started ? `\nStarted ${formatWhen(j.started)}` : ""}${j.ended ? `\nEnded ${formatWhen(j.ended)}` : ""}`,
    icon: JOB_ICON[j.state] ?? "circle-outline",
    // Jobs of a cloud backend cannot be attached to (no terminal): "job.running.service".
    contextValue: isRunning(j) ? (j.backend && j.backend !== "tmux" ? "job.running.service" : "job.running") : "job.ended",
    key: j.name,
  }));
  const portNodes: TreeNode[] = status.ports.map((p) => ({
    id: p.reverse ? `port:reverse:${p.remote_port}` : `port:${p.local_port}`,
    kind: "port",
    label: `localhost:${p.local_port}`,
    description: `${p.reverse ? "←" : "→"} ${p.remote_host}:${p.remote_port} · ${p.state}`,
    icon: "plug",
    contextValue: "port",
    // "R<port>" names a reverse forward by the machine's port (see orch.stopForwarding).
    key: p.reverse ? `R${p.remote_port}` : String(p.local_port),
  }));
  const start = status.config.file === null ? [firstSteps(status)] : [];
  return [
    ...start,
    machineGroup,
    {
      id: "group:jobs",
      kind: "group",
      label: "Jobs",
      description: `${status.jobs.filter(isRunning).length} running`,
      children: jobNodes.length ? jobNodes : [empty("jobs:none", "No jobs yet")],
    },
    ...queuesGroup(status),
    {
      id: "group:ports",
      kind: "group",
      label: "Ports",
      children: portNodes.length ? portNodes : [empty("ports:none", "No forwarded ports")],
    },
  ];
}
