/**
 * Entry point: reads the settings once, starts the sidecar, and wires its notifications to the
 * status bar, the tree view, job-end notifications and the debug provider.
 */

import * as vscode from "vscode";
import { registerCommands } from "./commands";
import { jobEndedMessage, newlyEnded } from "./common/format";
import { type IdleNotice, IdleWarnings } from "./common/idle";
import { effectiveMachine } from "./common/machines";
import { readSettings } from "./common/settings";
import { Debugger, registerDebug } from "./debug";
import { JobLogs } from "./logs";
import { onActiveInterpreterChanged } from "./python";
import { Sidecar } from "./sidecar";
import { StatusBar } from "./statusBar";
import { StatusStore } from "./store";
import type { JobInfo, MachineList, OrchStatus } from "./protocol";
import { OrchTree } from "./tree";

let sidecar: Sidecar | undefined;

/** workspaceState key of the machine picked with Orch: Select Machine… ("" = the default). */
const PICKED_MACHINE = "orch.pickedMachine";

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const folder = vscode.workspace.workspaceFolders?.[0];
  const config = vscode.workspace.getConfiguration("orch", folder?.uri);
  const settings = readSettings((key) => config.get(key), folder?.uri.fsPath);
  // A machine picked in this workspace wins over the `orch.machine` setting until that changes.
  const picked = () => context.workspaceState.get<string>(PICKED_MACHINE);
  settings.machine = effectiveMachine(picked(), settings.machine);
  const output = vscode.window.createOutputChannel("Orch", { log: true });
  const store = new StatusStore();
  const statusBar = new StatusBar();
  const tree = new OrchTree();
  sidecar = new Sidecar(output, settings, folder, String((context.extension.packageJSON as { version?: string }).version ?? "0"));
  const logs = new JobLogs(sidecar, settings.jobLogsView);
  const debug = new Debugger(sidecar, output);
  const idleWarnings = new IdleWarnings();
  let machines: MachineList | undefined;
  const showTree = () => tree.update(store.sidecar === "running" ? store.status : undefined, machines);
  const refreshMachines = async () => {
    if (sidecar?.state !== "running") {
      return;
    }
    try {
      machines = await sidecar.execute("orch.machine.list", {});
      if (picked() && !machines.machines.some((m) => m.name === picked())) {
        // The picked machine left orch.toml: back to the project's default.
        output.warn(`machine ${picked()} is no longer in orch.toml; using the project's default`);
        await selectMachine("");
        await sidecar.execute("orch.machine.select", { machine: "" });
        machines = await sidecar.execute("orch.machine.list", {});
      }
    } catch (error) {
      output.warn(`orch.machine.list failed: ${String(error)}`);
      machines = undefined;
    }
    showTree();
  };
  const selectMachine = async (machine: string) => {
    settings.machine = machine;
    await context.workspaceState.update(PICKED_MACHINE, machine);
  };

  context.subscriptions.push(
    output,
    store,
    statusBar,
    tree,
    logs,
    debug,
    vscode.window.registerTreeDataProvider("orch.explorer", tree),
    sidecar.onStatus((status) => store.setStatus(status)),
    sidecar.onDidChangeState((state) => {
      store.setSidecar(state);
      if (state === "running") {
        void refreshMachines();
      }
    }),
    store.onDidChange(({ before }) => {
      statusBar.update(store.sidecar, store.status);
      // While the sidecar is away the tree shows that, not stale jobs.
      showTree();
      const now = store.status;
      if (before && now && machinesMayDiffer(before, now)) {
        void refreshMachines();
      }
      if (store.sidecar === "running" && store.status) {
        const notice = idleWarnings.next(store.status.machine.name, store.status.idle);
        if (notice) {
          notifyIdle(notice, store.status.machine.name);
        }
      }
      for (const job of newlyEnded(before?.jobs, store.status?.jobs ?? [])) {
        logs.ended(job.name);
        if (settings.notifyOnJobEnd) {
          notifyJobEnded(job);
        }
      }
    }),
    ...registerCommands({ sidecar, store, logs, settings, output, debug, selectMachine, refreshMachines }),
    registerDebug(debug, store),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (!event.affectsConfiguration("orch")) {
        return;
      }
      // Settings are read once and sent to the sidecar at start: a restart applies them.
      const fresh = vscode.workspace.getConfiguration("orch", folder?.uri);
      if (event.affectsConfiguration("orch.machine")) {
        void context.workspaceState.update(PICKED_MACHINE, undefined); // the setting wins now
      }
      Object.assign(settings, readSettings((key) => fresh.get(key), folder?.uri.fsPath));
      settings.machine = event.affectsConfiguration("orch.machine")
        ? settings.machine
        : effectiveMachine(picked(), settings.machine);
      output.info("settings changed; restarting the sidecar to apply them");
      void sidecar?.restart();
    }),
  );
  if (!settings.python) {
    const listener = await onActiveInterpreterChanged(() => void sidecar?.restart());
    if (listener) {
      context.subscriptions.push(listener);
    }
  }
  // Not awaited: activation must not wait for Python to start.
  void sidecar.start();
}

/** The idle agent's warning: "Keep running" resets the machine's idle timer (orch.idle.keep). */
function notifyIdle(notice: IdleNotice, machine: string): void {
  const actions = notice.canKeep ? ["Keep running"] : [];
  void vscode.window.showWarningMessage(notice.message, ...actions).then(async (choice) => {
    if (choice !== "Keep running") {
      return;
    }
    try {
      const idle = await sidecar?.execute("orch.idle.keep", { machine });
      void vscode.window.showInformationMessage(`Orch: ${machine} keeps running${idle ? ` (${idle.line})` : ""}.`);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      void vscode.window.showErrorMessage(`Orch: could not keep ${machine} running: ${message}. In a terminal: orch idle keep`);
    }
  });
}

/** The machine switched or changed state, or orch.toml changed (machines added, removed):
 * the Orch view's list of every machine is read again. */
function machinesMayDiffer(before: OrchStatus, now: OrchStatus): boolean {
  return (
    before.machine.name !== now.machine.name ||
    before.machine.state !== now.machine.state ||
    JSON.stringify(before.config) !== JSON.stringify(now.config)
  );
}

function notifyJobEnded(job: JobInfo): void {
  const failed = job.state === "failed";
  const show = failed ? vscode.window.showErrorMessage : vscode.window.showInformationMessage;
  const actions = failed ? ["Show Logs", "Restart"] : ["Show Logs"];
  void show(`Orch: ${jobEndedMessage(job)}`, ...actions).then((choice) => {
    if (choice === "Show Logs") {
      void vscode.commands.executeCommand("orch.showJobLogs", job.name);
    } else if (choice === "Restart") {
      void vscode.commands.executeCommand("orch.restartJob", job.name);
    }
  });
}

export async function deactivate(): Promise<void> {
  await sidecar?.dispose();
  sidecar = undefined;
}
