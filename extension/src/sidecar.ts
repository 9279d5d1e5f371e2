/**
 * The connection to the sidecar: starts `<python> -m sidecar` through vscode-languageclient,
 * restarts it with backoff when it exits (and says so), forwards its notifications, and sends
 * every command as one `workspace/executeCommand`.
 */

import { execFile } from "node:child_process";
import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  State,
  Trace,
  WorkDoneProgress,
  type WorkDoneProgressBegin,
  type WorkDoneProgressReport,
  type WorkDoneProgressEnd,
} from "vscode-languageclient/node";
import { RestartPolicy } from "./common/backoff";
import type { SidecarState } from "./common/format";
import {
  describeInterpreter,
  type Interpreter,
  judgePreflight,
  PREFLIGHT_SCRIPT,
  type Preflight,
  type PreflightRun,
  resolveInterpreter,
  sidecarCommand,
} from "./common/interpreter";
import type { Settings } from "./common/settings";
import { activeInterpreter } from "./python";
import {
  type ArgsOf,
  type CommandName,
  type InitializationOptions,
  LOG_NOTIFICATION,
  type LogChunk,
  type OrchStatus,
  type ResultOf,
  STATUS_NOTIFICATION,
} from "./protocol";

export class SidecarNotRunningError extends Error {
  constructor() {
    super("the orch sidecar is not running");
  }
}

export type ProgressValue = WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd;

export class Sidecar implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private generation = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private restartMessage: vscode.Disposable | undefined;
  private readonly policy = new RestartPolicy();
  private _state: SidecarState = "starting";
  private _interpreter: Interpreter | undefined;
  /** The interpreter that passed the preflight check; checked again only when it changes. */
  private checked: string | undefined;

  private readonly stateEmitter = new vscode.EventEmitter<SidecarState>();
  private readonly statusEmitter = new vscode.EventEmitter<OrchStatus>();
  private readonly logEmitter = new vscode.EventEmitter<LogChunk>();
  readonly onDidChangeState = this.stateEmitter.event;
  readonly onStatus = this.statusEmitter.event;
  readonly onLog = this.logEmitter.event;

  constructor(
    private readonly output: vscode.LogOutputChannel,
    private readonly settings: Settings,
    private readonly workspaceFolder: vscode.WorkspaceFolder | undefined,
    private readonly extensionVersion: string,
  ) {}

  get state(): SidecarState {
    return this._state;
  }

  get interpreter(): Interpreter | undefined {
    return this._interpreter;
  }

  async start(): Promise<void> {
    const generation = ++this.generation;
    this.setState(this._state === "restarting" ? "restarting" : "starting");
    this._interpreter = await resolveInterpreter(this.settings.python, () =>
      activeInterpreter(this.workspaceFolder?.uri),
    );
    if (this.checked !== this._interpreter.path) {
      const check = await this.preflight(this._interpreter);
      if (generation !== this.generation) {
        return;
      }
      if (!check.ok) {
        // Retrying cannot help until the user changes something (a settings change or
        // Restart Sidecar starts over).
        this.setState("stopped");
        this.output.error(check.message);
        void this.explain(check.message, check.problem === "notFound" || check.problem === "notPython");
        return;
      }
      this.output.info(`${this._interpreter.path}: Python ${check.python}, orch ${check.orch}`);
      this.checked = this._interpreter.path;
    }
    this.output.info(`Starting the sidecar with ${describeInterpreter(this._interpreter)}`);
    const client = this.createClient(this._interpreter, generation);
    this.client = client;
    this.policy.started(Date.now());
    try {
      await client.start();
      await client.setTrace(Trace.fromString(this.settings.trace));
    } catch (error) {
      this.output.error(`The sidecar did not start: ${String(error)}`);
      this.scheduleRestart(generation);
      return;
    }
    // start() can resolve although the server died during initialize; the close handler has
    // then already moved on to a new generation.
    if (generation !== this.generation || !client.isRunning()) {
      this.scheduleRestart(generation);
      return;
    }
    this.setState("running");
    // One request for the initial state; from here on the server pushes `orch/status`.
    try {
      this.statusEmitter.fire(await this.execute("orch.status", {}));
    } catch (error) {
      this.output.warn(`orch.status failed: ${String(error)}`);
    }
  }

  /** Stops the running sidecar and starts a fresh one (the user asked for it). */
  async restart(): Promise<void> {
    this.policy.reset();
    this.checked = undefined;
    this.clearRestartTimer();
    const old = this.client;
    this.generation++;
    this.client = undefined;
    await this.stopClient(old);
    this.setState("starting");
    await this.start();
  }

  async execute<C extends CommandName>(
    command: C,
    args: ArgsOf<C>,
    options: { token?: vscode.CancellationToken; progress?: (value: ProgressValue) => void } = {},
  ): Promise<ResultOf<C>> {
    const client = this.client;
    if (!client || !client.isRunning()) {
      throw new SidecarNotRunningError();
    }
    let workDoneToken: string | undefined;
    let progressListener: vscode.Disposable | undefined;
    if (options.progress) {
      workDoneToken = `orch-${command}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
      progressListener = client.onProgress(WorkDoneProgress.type, workDoneToken, options.progress);
    }
    try {
      return (await client.sendRequest(
        ExecuteCommandRequest.type,
        { command, arguments: [args], workDoneToken },
        options.token,
      )) as ResultOf<C>;
    } finally {
      progressListener?.dispose();
    }
  }

  async dispose(): Promise<void> {
    this.clearRestartTimer();
    this.restartMessage?.dispose();
    this.generation++;
    const client = this.client;
    this.client = undefined;
    await this.stopClient(client);
    this.stateEmitter.dispose();
    this.statusEmitter.dispose();
    this.logEmitter.dispose();
  }

  private preflight(interpreter: Interpreter): Promise<Preflight> {
    return new Promise((resolve) => {
      execFile(
        interpreter.path,
        ["-c", PREFLIGHT_SCRIPT],
        { cwd: this.workspaceFolder?.uri.fsPath, timeout: 60_000, env: process.env },
        (error, stdout, stderr) => {
          const run: PreflightRun = {
            errorCode: (error as NodeJS.ErrnoException | null)?.code,
            stdout: String(stdout),
            stderr: String(stderr),
          };
          resolve(judgePreflight(interpreter, run, this.extensionVersion));
        },
      );
    });
  }

  /** The one message saying why the sidecar cannot start, with what the user can do. */
  private async explain(message: string, interpreterMissing: boolean): Promise<void> {
    const buttons = ["Select Interpreter", "Open Settings", "Show Output"];
    const choice = await vscode.window.showErrorMessage(`Orch: ${message}`, ...buttons);
    if (choice === "Select Interpreter") {
      await this.selectInterpreter(interpreterMissing);
    } else if (choice === "Open Settings") {
      await vscode.commands.executeCommand("workbench.action.openSettings", "orch.python");
    } else if (choice === "Show Output") {
      this.output.show();
    }
  }

  /** The Python extension's picker when it chooses for us; else a file dialog for orch.python. */
  private async selectInterpreter(_missing: boolean): Promise<void> {
    const pythonExtension = vscode.extensions.getExtension("ms-python.python");
    if (pythonExtension && !this.settings.python) {
      await vscode.commands.executeCommand("python.setInterpreter");
      return;
    }
    const picked = await vscode.window.showOpenDialog({
      title: "Orch: the Python interpreter that has orch installed",
      openLabel: "Use for Orch",
      canSelectMany: false,
      defaultUri: this.workspaceFolder?.uri,
    });
    if (picked?.[0]) {
      // The settings change restarts the sidecar (extension.ts).
      await vscode.workspace
        .getConfiguration("orch", this.workspaceFolder?.uri)
        .update("python", picked[0].fsPath, vscode.ConfigurationTarget.Workspace);
    }
  }

  private createClient(interpreter: Interpreter, generation: number): LanguageClient {
    const { command, args } = sidecarCommand(interpreter.path);
    const serverOptions: ServerOptions = {
      command,
      args,
      options: {
        cwd: this.workspaceFolder?.uri.fsPath,
        env: { ...process.env, PYTHONUNBUFFERED: "1" },
      },
    };
    const initializationOptions: InitializationOptions = {
      machine: this.settings.machine || null,
      logLevel: this.settings.logLevel,
      clientName: "vscode",
    };
    const clientOptions: LanguageClientOptions = {
      // The sidecar's one language: orch.toml (diagnostics, completion, hover).
      documentSelector: [{ scheme: "file", pattern: "**/orch.toml" }],
      synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/orch.toml") },
      outputChannel: this.output,
      traceOutputChannel: this.output,
      revealOutputChannelOn: 4 /* RevealOutputChannelOn.Never */,
      initializationOptions,
      workspaceFolder: this.workspaceFolder,
      // Logged, not toasted: the restart logic below tells the user what happens next.
      initializationFailedHandler: (error) => {
        this.output.error(`The sidecar failed to initialize: ${String(error)}`);
        return false;
      },
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue, handled: true }),
        closed: () => {
          // We restart ourselves (with backoff and a message); see scheduleRestart.
          this.scheduleRestart(generation);
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
    };
    const client = new LanguageClient("orch", "Orch sidecar", serverOptions, clientOptions);
    client.onNotification(STATUS_NOTIFICATION, (status: OrchStatus) => this.statusEmitter.fire(status));
    client.onNotification(LOG_NOTIFICATION, (chunk: LogChunk) => this.logEmitter.fire(chunk));
    client.onDidChangeState((event) => {
      if (event.newState === State.Stopped && generation === this.generation && this._state === "running") {
        this.scheduleRestart(generation);
      }
    });
    return client;
  }

  /** The sidecar of `generation` exited or failed to start: restart it after a backoff. */
  private scheduleRestart(generation: number): void {
    if (generation !== this.generation || this.restartTimer) {
      return;
    }
    // Whatever the old client still reports from here on is stale.
    this.generation++;
    const decision = this.policy.exited(Date.now());
    if (!decision.restart) {
      this.setState("stopped");
      // The install passed the preflight check, so the output is where the reason is.
      const message =
        `Orch: the sidecar exited ${decision.attempts} times in a row and will not be restarted. ` +
        `Its output says why; Restart Sidecar tries again.`;
      this.output.error(message);
      void vscode.window.showErrorMessage(message, "Show Output", "Restart Sidecar").then((choice) => {
        if (choice === "Show Output") {
          this.output.show();
        } else if (choice === "Restart Sidecar") {
          void this.restart();
        }
      });
      return;
    }
    const seconds = (decision.delayMs / 1000).toFixed(0);
    const message = `Orch: the sidecar exited; restarting it in ${seconds}s (attempt ${decision.attempt}).`;
    this.output.warn(message);
    this.setState("restarting");
    this.restartMessage?.dispose();
    this.restartMessage = vscode.window.setStatusBarMessage(`$(warning) ${message}`);
    if (decision.attempt === 1) {
      void vscode.window.showWarningMessage(message, "Show Output").then((choice) => {
        if (choice) {
          this.output.show();
        }
      });
    }
    const old = this.client;
    this.client = undefined;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      void this.stopClient(old).then(() => this.start());
    }, decision.delayMs);
  }

  private async stopClient(client: LanguageClient | undefined): Promise<void> {
    if (!client) {
      return;
    }
    try {
      if (client.isRunning()) {
        await client.stop(2_000);
      }
      await client.dispose(2_000);
    } catch {
      // Already stopped or never started; nothing to release.
    }
  }

  private clearRestartTimer(): void {
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
    }
  }

  private setState(state: SidecarState): void {
    if (state === "running" || state === "stopped") {
      this.restartMessage?.dispose();
      this.restartMessage = undefined;
    }
    if (this._state !== state) {
      this._state = state;
      this.stateEmitter.fire(state);
    }
  }
}
