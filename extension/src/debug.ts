/**
 * Attaching VS Code's debugger to an orch debug job. "Orch: Attach to job" in the debug picker
 * (a configuration provider for the `orch` debug type) and "Orch: Debug Job…" both end in
 * `attachDebugger`: it asks the sidecar for the job's debugpy attach configuration
 * (`orch.debug.attachConfig`, which waits until debugpy listens), starts a `debugpy` session
 * and watches it; a session that ends before debugpy answered is retried until a deadline,
 * then the user is told what happened, with "Retry" and "Show Logs".
 */

import * as vscode from "vscode";
import { ResponseError } from "vscode-languageclient/node";
import { attachFailureMessage, isRunning } from "./common/format";
import type { DebugAttachConfig } from "./protocol";
import type { StatusStore } from "./store";
import type { Sidecar } from "./sidecar";

/** How long one attach may keep retrying. */
const ATTACH_DEADLINE_MS = 30_000;
/** A session that has not heard from debugpy after this long is given up on and retried. */
const SESSION_TIMEOUT_MS = 15_000;
const ATTEMPT_KEY = "orchAttachAttempt";

type Outcome = { ok: true } | { ok: false; reason: string };

/** Whether any installed extension provides the `debugpy` debug type (the Python Debugger, or
 * the e2e test's stand-in). */
function debugpyTypeAvailable(): boolean {
  return vscode.extensions.all.some((extension) => {
    const debuggers = (extension.packageJSON as { contributes?: { debuggers?: { type?: string }[] } })?.contributes
      ?.debuggers;
    return debuggers?.some((d) => d.type === "debugpy") ?? false;
  });
}

/** Follows each attach attempt's session: did debugpy answer, or did the session end first? */
class AttachWatcher implements vscode.Disposable {
  private readonly waiting = new Map<string, (outcome: Outcome) => void>();
  private readonly disposables: vscode.Disposable[] = [];

  constructor() {
    this.disposables.push(
      vscode.debug.registerDebugAdapterTrackerFactory("debugpy", {
        createDebugAdapterTracker: (session) => {
          const attempt = session.configuration[ATTEMPT_KEY] as string | undefined;
          if (!attempt) {
            return undefined;
          }
          return {
            onDidSendMessage: (message: { type?: string; event?: string; command?: string; success?: boolean }) => {
              // `initialized` comes once debugpy has the debuggee; an `attach` response ends the handshake.
              if (message.type === "event" && message.event === "initialized") {
                this.settle(attempt, { ok: true });
              } else if (message.type === "response" && message.command === "attach") {
                this.settle(
                  attempt,
                  message.success ? { ok: true } : { ok: false, reason: "debugpy refused the attach request" },
                );
              }
            },
            onError: (error: Error) =>
              this.settle(attempt, { ok: false, reason: `the connection to debugpy failed (${error.message})` }),
            onExit: () =>
              this.settle(attempt, { ok: false, reason: "the connection to debugpy closed before it answered" }),
          };
        },
      }),
      vscode.debug.onDidTerminateDebugSession((session) => {
        const attempt = session.configuration[ATTEMPT_KEY] as string | undefined;
        if (attempt) {
          this.settle(attempt, { ok: false, reason: "the debug session ended before debugpy answered" });
        }
      }),
    );
  }

  wait(attempt: string, timeoutMs: number): Promise<Outcome> {
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => this.settle(attempt, { ok: false, reason: `debugpy did not answer within ${Math.round(timeoutMs / 1000)} s` }),
        timeoutMs,
      );
      this.waiting.set(attempt, (outcome) => {
        clearTimeout(timer);
        resolve(outcome);
      });
    });
  }

  private settle(attempt: string, outcome: Outcome): void {
    const resolve = this.waiting.get(attempt);
    if (resolve) {
      this.waiting.delete(attempt);
      resolve(outcome);
    }
  }

  dispose(): void {
    for (const resolve of this.waiting.values()) {
      resolve({ ok: false, reason: "the extension is shutting down" });
    }
    this.waiting.clear();
    vscode.Disposable.from(...this.disposables).dispose();
  }
}

function errorText(error: unknown): string {
  if (error instanceof ResponseError) {
    const hint = (error.data as { hint?: string } | undefined)?.hint;
    return hint ? `${error.message} (${hint})` : error.message;
  }
  return error instanceof Error ? error.message : String(error);
}

const RETRYABLE: ReadonlySet<string> = new Set([
  "DebuggerNotReady",
  "ConnectionFailed",
  "Unreachable",
  "ConnectTimeout",
]);

/** A job-level failure (not running, not a debug job): retrying cannot help. */
function isFinal(error: unknown): boolean {
  const kind = error instanceof ResponseError ? (error.data as { kind?: string } | undefined)?.kind : undefined;
  return kind !== undefined && !RETRYABLE.has(kind);
}

export class Debugger implements vscode.Disposable {
  private readonly watcher = new AttachWatcher();
  private attempts = 0;

  constructor(
    private readonly sidecar: Sidecar,
    private readonly output: vscode.LogOutputChannel,
  ) {}

  /**
   * Attaches VS Code to job `job`; `first` is a configuration the caller already has (from
   * `orch.debug.start`). Resolves true once a session talks to debugpy.
   */
  async attach(job: string, first?: DebugAttachConfig): Promise<boolean> {
    if (!debugpyTypeAvailable()) {
      void vscode.window
        .showErrorMessage(
          `Orch: job ${job} waits for a debugger, but VS Code has no \`debugpy\` debugger. Install the Python Debugger extension (ms-python.debugpy), then attach with “Orch: Attach to job” in Run and Debug.`,
          "Install Python Debugger",
        )
        .then((choice) => choice && vscode.commands.executeCommand("workbench.extensions.search", "ms-python.debugpy"));
      return false;
    }
    const deadline = Date.now() + ATTACH_DEADLINE_MS;
    let config = first;
    let reason = "";
    for (let tries = 1; ; tries++) {
      try {
        config ??= await this.sidecar.execute("orch.debug.attachConfig", { name: job });
      } catch (error) {
        reason = errorText(error);
        if (isFinal(error)) {
          break;
        }
      }
      if (config) {
        const attempt = `${Date.now()}-${++this.attempts}`;
        const folder = vscode.workspace.workspaceFolders?.[0];
        const outcome = this.watcher.wait(attempt, SESSION_TIMEOUT_MS);
        const started = await vscode.debug.startDebugging(folder, { ...config, [ATTEMPT_KEY]: attempt });
        const result = started ? await outcome : { ok: false as const, reason: "VS Code did not start the debug session" };
        if (result.ok) {
          return true;
        }
        reason = result.reason;
        this.output.warn(`attach to job ${job}, try ${tries}: ${reason}`);
      }
      config = undefined;
      if (Date.now() + 1_000 > deadline) {
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    this.output.error(`could not attach the debugger to job ${job}: ${reason}`);
    const choice = await vscode.window.showErrorMessage(attachFailureMessage(job, reason), "Retry", "Show Logs");
    if (choice === "Retry") {
      return this.attach(job);
    }
    if (choice === "Show Logs") {
      await vscode.commands.executeCommand("orch.showJobLogs", job);
    }
    return false;
  }

  dispose(): void {
    this.watcher.dispose();
  }
}

export class AttachProvider implements vscode.DebugConfigurationProvider {
  constructor(
    private readonly debuggerForJobs: Debugger,
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

  /** Starts the debugpy session itself (with retries) and so cancels the `orch` one. */
  async resolveDebugConfiguration(
    _folder: vscode.WorkspaceFolder | undefined,
    config: vscode.DebugConfiguration,
  ): Promise<vscode.DebugConfiguration | undefined> {
    let job = typeof config.job === "string" ? config.job : "";
    if (!job) {
      job = (await vscode.commands.executeCommand<string | undefined>("orch.pickJob", "running")) ?? "";
    }
    if (job) {
      void this.debuggerForJobs.attach(job);
    }
    return undefined;
  }
}

export function registerDebug(debuggerForJobs: Debugger, store: StatusStore): vscode.Disposable {
  const provider = new AttachProvider(debuggerForJobs, store);
  return vscode.Disposable.from(
    vscode.debug.registerDebugConfigurationProvider("orch", provider, vscode.DebugConfigurationProviderTriggerKind.Dynamic),
    vscode.debug.registerDebugConfigurationProvider("orch", provider, vscode.DebugConfigurationProviderTriggerKind.Initial),
  );
}
