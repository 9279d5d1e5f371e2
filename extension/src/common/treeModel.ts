/**
 * The Orch tree view's content as plain data: three groups (Machines, Jobs, Ports) built from
 * an OrchStatus. The VS Code tree provider only maps these nodes onto TreeItems.
 */

import type { OrchStatus } from "../protocol";
import { describeJob, isRunning } from "./format";

export type NodeKind = "group" | "machine" | "job" | "port" | "empty";

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
  children?: TreeNode[];
}

const JOB_ICON: Record<string, string> = {
  running: "loading~spin",
  succeeded: "pass",
  failed: "error",
  stopped: "debug-stop",
  lost: "question",
};

function empty(id: string, label: string): TreeNode {
  return { id, kind: "empty", label };
}

export function buildTree(status: OrchStatus | undefined): TreeNode[] {
  if (!status) {
    return [empty("waiting", "Waiting for the orch sidecar…")];
  }
  const m = status.machine;
  const machines: TreeNode = {
    id: "group:machines",
    kind: "group",
    label: "Machines",
    children: [
      {
        id: `machine:${m.name}`,
        kind: "machine",
        label: m.name,
        description: `${m.kind} · ${m.state}`,
        tooltip: m.address ? `${m.name} at ${m.address}` : m.name,
        icon: m.state === "running" ? "vm-running" : m.state === "starting" ? "loading~spin" : "vm-outline",
        contextValue: m.state === "running" ? "machine.running" : "machine.stopped",
        key: m.name,
      },
    ],
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
    tooltip: `${j.name}: ${describeJob(j)}${j.started ? `\nStarted ${j.started}` : ""}${j.ended ? `\nEnded ${j.ended}` : ""}`,
    icon: JOB_ICON[j.state] ?? "circle-outline",
    contextValue: isRunning(j) ? "job.running" : "job.ended",
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
  return [
    machines,
    {
      id: "group:jobs",
      kind: "group",
      label: "Jobs",
      description: `${status.jobs.filter(isRunning).length} running`,
      children: jobNodes.length ? jobNodes : [empty("jobs:none", "No jobs yet")],
    },
    {
      id: "group:ports",
      kind: "group",
      label: "Ports",
      children: portNodes.length ? portNodes : [empty("ports:none", "No forwarded ports")],
    },
  ];
}
