/**
 * The machine picker as plain data: the quick-pick items and the Orch view's machine nodes
 * built from `orch.machine.list` (kind, state, $/h where the machine has a cost), which
 * machine the editor acts on (a pick remembered for the workspace, else the `orch.machine`
 * setting), and the words of the terminate confirmation. No VS Code here: unit-tested.
 */

import type { MachineList, MachineStatus, TerminatePlan } from "../protocol";

export interface MachinePickItem {
  label: string;
  description: string;
  detail?: string;
  /** The machine's name ("" never: every entry is a configured machine). */
  machine: string;
  picked: boolean;
}

/** "$0.36/h" with enough digits for cheap spot prices ("$0.0104/h"). */
export function formatPrice(perHour: number): string {
  return `$${perHour.toFixed(perHour < 0.1 ? 4 : 2)}/h`;
}

/** "codespaces · running · $0.36/h" (the kind, the state, the price when it has one). */
export function describeMachine(m: MachineStatus): string {
  const parts = [m.kind, m.state];
  if (m.price_per_hour !== null && m.price_per_hour !== undefined) {
    parts.push(formatPrice(m.price_per_hour));
  }
  return parts.join(" · ");
}

/** The machine the editor acts on: the workspace's pick wins over the setting; "" means
 * the project's default machine. */
export function effectiveMachine(picked: string | undefined, setting: string): string {
  return picked ?? setting;
}

/** The list with the live status of the selected machine (fresher than the list). */
export function withLiveStatus(list: MachineList, live: MachineStatus | undefined): MachineStatus[] {
  return list.machines.map((m) => (live && live.name === m.name ? { ...m, ...live } : m));
}

export function pickItems(list: MachineList, live?: MachineStatus): MachinePickItem[] {
  const selected = list.selected ?? list.default;
  const items = withLiveStatus(list, live).map((m) => {
    const notes = [m.name === list.default ? "project default" : "", m.detail ?? ""].filter(Boolean);
    return {
      label: `${m.name === selected ? "$(check) " : ""}${m.name}`,
      description: describeMachine(m),
      detail: notes.length ? notes.join(" · ") : undefined,
      machine: m.name,
      picked: m.name === selected,
    };
  });
  // The selected machine first, then the others by name (the sidecar sends them by name).
  return [...items.filter((i) => i.picked), ...items.filter((i) => !i.picked)];
}

/** Drives the view's Up / Down / Terminate / Select buttons (package.json `viewItem`):
 * `machine.<running|stopped>[.terminable][.selected]`. */
export function machineContext(m: MachineStatus, selected: boolean): string {
  const up = m.state === "running" || m.state === "starting" ? "running" : "stopped";
  const terminable = m.capabilities.can_terminate && m.state !== "not-created" ? ".terminable" : "";
  return `machine.${up}${terminable}${selected ? ".selected" : ""}`;
}

export function machineIcon(m: MachineStatus): string {
  if (m.state === "running") {
    return "vm-running";
  }
  return m.state === "starting" || m.state === "stopping" ? "loading~spin" : "vm-outline";
}

export function machineTooltip(m: MachineStatus, selected: boolean): string {
  const lines = [`${m.name} (${m.kind}): ${m.state}${selected ? " — the machine the editor acts on" : ""}`];
  if (m.address) {
    lines.push(`Address: ${m.address}`);
  }
  if (m.instance_type || m.machine_type) {
    lines.push(`Type: ${m.instance_type ?? m.machine_type}${m.market ? ` (${m.market})` : ""}`);
  }
  if (m.price_per_hour !== null && m.price_per_hour !== undefined) {
    const since = m.cost_so_far !== null && m.cost_so_far !== undefined ? `, $${m.cost_so_far.toFixed(2)} since it started` : "";
    lines.push(`Cost: ${formatPrice(m.price_per_hour)}${since}`);
  }
  if (m.detail) {
    lines.push(m.detail);
  }
  if (!selected) {
    lines.push("Click to make it the machine the editor acts on.");
  }
  return lines.join("\n");
}

/** The modal's text before terminating (what is deleted, then each warning of what would be
 * lost: a codespace's unpushed commits); undefined when there is nothing to terminate. */
export function terminateMessage(plan: TerminatePlan): string | undefined {
  if (!plan.plan) {
    return undefined;
  }
  const lines = [`Terminate ${plan.machine}? This deletes ${plan.plan}, and every file on its disk is lost for good.`];
  for (const warning of plan.warnings) {
    lines.push(`⚠ ${warning}`);
  }
  return lines.join("\n");
}

/** The Orch view's machine nodes' text: the kind only when it differs from the name. */
export function nodeDescription(m: MachineStatus, selected: boolean): string {
  const text = describeMachine(m);
  const short = m.kind === m.name ? text.slice(m.kind.length + 3) : text;
  return selected ? `${short} · in use` : short;
}
