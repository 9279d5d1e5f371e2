/**
 * Entry point: reads the settings once, starts the sidecar, and wires its notifications to the
 * status bar, the tree view, job-end notifications and the debug provider.
 */

import * as vscode from "vscode";
import { registerCommands } from "./commands";
import { jobEndedMessage, newlyEnded } from "./common/format";
import { type IdleNotice, IdleWarnings } from "./common/idle";
import { readSettings } from "./common/settings";
import { Debugger, registerDebug } from "./debug";
import { JobLogs } from "./logs";
import { onActiveInterpreterChanged } from "./python";
import { Sidecar } from "./sidecar";
import { StatusBar } from "./statusBar";
import { StatusStore } from "./store";
import type { JobInfo } from "./protocol";
import { OrchTree } from "./tree";

let sidecar: Sidecar | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const folder = vscode.workspace.workspaceFolders?.[0];
  const config = vscode.workspace.getConfiguration("orch", folder?.uri);
  const settings = readSettings((key) => config.get(key), folder?.uri.fsPath);
  const output = vscode.window.createOutputChannel("Orch", { log: true });
  const store = new StatusStore();
  const statusBar = new StatusBar();
  const tree = new OrchTree();
  sidecar = new Sidecar(output, settings, folder, String((context.extension.packageJSON as { version?: string }).version ?? "0"));
  const logs = new JobLogs(sidecar, settings.jobLogsView);
  const debug = new Debugger(sidecar, output);
  const idleWarnings = new IdleWarnings();

  context.subscriptions.push(
    output,
    store,
    statusBar,
    tree,
    logs,
    debug,
    vscode.window.registerTreeDataProvider("orch.explorer", tree),
    sidecar.onStatus((status) => store.setStatus(status)),
    sidecar.onDidChangeState((state) => store.setSidecar(state)),
    store.onDidChange(({ before }) => {
      statusBar.update(store.sidecar, store.status);
      // While the sidecar is away the tree shows that, not stale jobs.
      tree.update(store.sidecar === "running" ? store.status : undefined);
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
    ...registerCommands({ sidecar, store, logs, settings, output, debug }),
    registerDebug(debug, store),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (!event.affectsConfiguration("orch")) {
        return;
      }
      // Settings are read once and sent to the sidecar at start: a restart applies them.
      const fresh = vscode.workspace.getConfiguration("orch", folder?.uri);
      Object.assign(settings, readSettings((key) => fresh.get(key), folder?.uri.fsPath));
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
