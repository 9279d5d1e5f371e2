/**
 * "Orch: Attach to job" in the debug picker: a configuration provider for the `orch` debug type
 * that asks the sidecar (`orch.debug.attachConfig`) for a debugpy attach configuration and
 * hands that to the Python Debugger extension.
 */

import * as vscode from "vscode";
import { isRunning } from "./common/format";
import type { StatusStore } from "./store";
import type { Sidecar } from "./sidecar";

const DEBUGPY_EXTENSION = "ms-python.debugpy";

export class AttachProvider implements vscode.DebugConfigurationProvider {
  constructor(
    private readonly sidecar: Sidecar,
    private readonly store: StatusStore,
  ) {}

  /** Dynamic configurations: one per running job. */
  provideDebugConfigurations(): vscode.DebugConfiguration[] {
    const running = (this.store.status?.jobs ?? []).filter(isRunning);
    const jobs = running.length ? running.map((j) => j.name) : [""];
    return jobs.map((job) => ({
      type: "orch",
      request: "attach",
      name: job ? `Orch: Attach to job ${job}` : "Orch: Attach to job…",
      job,
    }));
  }

  async resolveDebugConfiguration(
    _folder: vscode.WorkspaceFolder | undefined,
    config: vscode.DebugConfiguration,
    token?: vscode.CancellationToken,
  ): Promise<vscode.DebugConfiguration | undefined> {
    let job = typeof config.job === "string" ? config.job : "";
    if (!job) {
      job = (await vscode.commands.executeCommand<string | undefined>("orch.pickJob", "running")) ?? "";
      if (!job) {
        return undefined;
      }
    }
    let attach: vscode.DebugConfiguration;
    try {
      attach = await this.sidecar.execute("orch.debug.attachConfig", { name: job }, { token });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      void vscode.window.showErrorMessage(
        `Orch: cannot attach to job ${job}: ${message}. Start the job with debugpy (orch run --debug) and try again.`,
      );
      return undefined;
    }
    if (attach.type === "debugpy" && !vscode.extensions.getExtension(DEBUGPY_EXTENSION)) {
      void vscode.window.showErrorMessage(
        "Orch: attaching needs the Python Debugger extension (ms-python.debugpy). Install it and try again.",
      );
      return undefined;
    }
    return attach;
  }
}

export function registerDebug(sidecar: Sidecar, store: StatusStore): vscode.Disposable {
  const provider = new AttachProvider(sidecar, store);
  return vscode.Disposable.from(
    vscode.debug.registerDebugConfigurationProvider("orch", provider, vscode.DebugConfigurationProviderTriggerKind.Dynamic),
    vscode.debug.registerDebugConfigurationProvider("orch", provider, vscode.DebugConfigurationProviderTriggerKind.Initial),
  );
}
