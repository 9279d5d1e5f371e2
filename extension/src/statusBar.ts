/**
 * Three status-bar items: the machine (and the sidecar's own state), the sync, and the jobs
 * (`N running · M queued`, spinning while any job or queue runs). Text comes from
 * common/format; this only draws it.
 */

import * as vscode from "vscode";
import { configHasErrors, type ItemText, jobsItem, machineItem, type SidecarState, syncItem } from "./common/format";
import { idleAndCostLines, overBudget } from "./common/idle";
import type { OrchStatus } from "./protocol";

function create(id: string, name: string, priority: number, command: string): vscode.StatusBarItem {
  const item = vscode.window.createStatusBarItem(id, vscode.StatusBarAlignment.Left, priority);
  item.name = name;
  item.command = command;
  return item;
}

function apply(item: vscode.StatusBarItem, text: ItemText): void {
  item.text = text.text;
  item.tooltip = text.tooltip;
  item.backgroundColor =
    text.severity === "error"
      ? new vscode.ThemeColor("statusBarItem.errorBackground")
      : text.severity === "warning"
        ? new vscode.ThemeColor("statusBarItem.warningBackground")
        : undefined;
}

export class StatusBar implements vscode.Disposable {
  private readonly machine = create("orch.machine", "Orch Machine", 100, "orch.showStatus");
  private readonly jobs = create("orch.jobs", "Orch Jobs", 99, "orch.jobs");
  private readonly sync = create("orch.sync", "Orch Sync", 98, "orch.syncNow");

  constructor() {
    this.update("starting", undefined);
    this.machine.show();
  }

  update(sidecar: SidecarState, status: OrchStatus | undefined): void {
    const machine = machineItem(sidecar, status?.machine, sidecar === "running" ? status?.config : undefined);
    if (sidecar === "running" && status?.machine) {
      // The idle agent's line and the spend today (with a warning colour past the budget).
      const extra = idleAndCostLines(status);
      if (extra.length) {
        machine.tooltip = [machine.tooltip, ...extra].join("\n");
      }
      if (overBudget(status) && !machine.severity) {
        machine.severity = "warning";
      }
    }
    apply(this.machine, machine);
    const configErrors = sidecar === "running" && configHasErrors(status?.config);
    this.machine.command =
      sidecar === "stopped" ? "orch.showOutput" : configErrors ? "orch.openConfigProblem" : "orch.selectMachine";
    if (sidecar === "running" && status && !configErrors) {
      apply(this.jobs, jobsItem(status.jobs, status.queues));
      const sync = syncItem(status.sync);
      apply(this.sync, sync);
      this.sync.command = status.sync.state === "off" ? "orch.startSync" : "orch.syncNow";
      this.jobs.show();
      this.sync.show();
    } else {
      this.jobs.hide();
      this.sync.hide();
    }
  }

  dispose(): void {
    this.machine.dispose();
    this.jobs.dispose();
    this.sync.dispose();
  }
}
