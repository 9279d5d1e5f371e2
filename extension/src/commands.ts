/**
 * The palette, tree and status-bar commands. Each one gathers its arguments from the user (or
 * the clicked tree item) and sends exactly one `workspace/executeCommand` to the sidecar; a
 * failure becomes an error toast that says what to do.
 */

import * as fs from "node:fs";
import * as vscode from "vscode";
import { LSPErrorCodes, ResponseError } from "vscode-languageclient/node";
import {
  describeJob,
  errorActions,
  isEnded,
  isRunning,
  requestErrorMessage,
  sshConfigMessage,
  statusSummary,
  suggestJobName,
  validateJobName,
  validatePort,
} from "./common/format";
import { orchCliFor } from "./common/interpreter";
import { pickItems, terminateMessage } from "./common/machines";
import type { Settings } from "./common/settings";
import type { TreeNode } from "./common/treeModel";
import type { Debugger } from "./debug";
import type { JobLogs } from "./logs";
import type { ArgsOf, CommandName, ConfigProblem, JobInfo, OrchErrorData, ResultOf } from "./protocol";
import { type ProgressValue, type Sidecar, SidecarNotRunningError } from "./sidecar";
import type { StatusStore } from "./store";

type JobFilter = "any" | "running" | "ended";

interface Context {
  sidecar: Sidecar;
  store: StatusStore;
  logs: JobLogs;
  settings: Settings;
  output: vscode.LogOutputChannel;
  debug: Debugger;
  /** Remembers the picked machine for this workspace ("" = the project's default). */
  selectMachine: (machine: string) => Promise<void>;
  /** Reads `orch.machine.list` anew into the Orch view. */
  refreshMachines: () => Promise<unknown>;
}

/** The user was already told (and chose not to act); nothing more to say. */
class HandledError extends Error {}

function errorData(error: unknown): OrchErrorData | undefined {
  return error instanceof ResponseError ? (error.data as OrchErrorData | undefined) : undefined;
}

/** The machine a command acts on: a name passed in, the clicked tree item, or the selected one. */
function machineArg(ctx: Context, arg: unknown): { machine?: string } {
  if (typeof arg === "string" && arg) {
    return { machine: arg };
  }
  const node = arg as TreeNode | undefined;
  if (node?.kind === "machine" && node.key) {
    return { machine: node.key };
  }
  return ctx.settings.machine ? { machine: ctx.settings.machine } : {};
}

/** Up, with each step shown (a cloud machine: launch → running → SSH reachable → host key
 * verified, as the sidecar reports them). */
async function startMachine(ctx: Context, machine: unknown): Promise<void> {
  const args = machineArg(ctx, machine);
  await withProgress(`Orch: starting ${args.machine ?? "the machine"}`, (token, progress) =>
    ctx.sidecar.execute("orch.machine.up", args, { token, progress }),
  ).then(() => ctx.refreshMachines());
}

/** Opens orch.toml at one of its problems (from the status, or from an error's data). */
async function openConfigProblem(ctx: Context, index = 0, problems?: ConfigProblem[]): Promise<void> {
  const all = problems ?? ctx.store.status?.config.problems ?? [];
  const problem = all[index] ?? all[0];
  if (!problem) {
    void vscode.window.showInformationMessage("Orch: orch.toml has no problems now.");
    return;
  }
  const document = await vscode.workspace.openTextDocument(vscode.Uri.file(problem.file));
  const at = new vscode.Position(Math.max((problem.line ?? 1) - 1, 0), Math.max((problem.column ?? 1) - 1, 0));
  await vscode.window.showTextDocument(document, { selection: new vscode.Range(at, at) });
}

/** Shows a failed request with the buttons its error allows, and does what is picked. */
async function reportError(ctx: Context, action: string, error: unknown): Promise<void> {
  if (error instanceof HandledError) {
    return;
  }
  if (error instanceof ResponseError && error.code === LSPErrorCodes.RequestCancelled) {
    return;
  }
  if (error instanceof SidecarNotRunningError) {
    const message = `Orch: ${action} failed: the orch sidecar is not running. See its output for why.`;
    const choice = await vscode.window.showErrorMessage(message, "Show Output", "Restart Sidecar");
    if (choice === "Restart Sidecar") {
      void ctx.sidecar.restart();
    } else if (choice === "Show Output") {
      ctx.output.show();
    }
    return;
  }
  const details = error instanceof ResponseError ? error : { message: String(error) };
  const data = errorData(error);
  // Expected failures (with a kind) are a warning in the log; anything else an error.
  if (data?.kind) {
    ctx.output.warn(`${action} failed: ${details.message}`);
  } else {
    ctx.output.error(`${action} failed: ${details.message}`);
  }
  const choice = await vscode.window.showErrorMessage(requestErrorMessage(action, details), ...errorActions(data));
  switch (choice) {
    case "Start Machine":
      await startMachine(ctx, data?.target).catch((e: unknown) => reportError(ctx, "Up", e));
      break;
    case "Open orch.toml":
      await openConfigProblem(ctx, 0, data?.problems);
      break;
    case "Open Log":
    case "Open File":
      if (data?.target) {
        await vscode.window.showTextDocument(vscode.Uri.file(data.target));
      }
      break;
    case "Show Output":
      ctx.output.show();
      break;
  }
}

/**
 * Sends a command that needs the machine; if the machine is not running, offers to start it
 * and then sends the same command again (the user's answers are not asked twice).
 */
async function withMachine<C extends CommandName>(
  ctx: Context,
  command: C,
  args: ArgsOf<C>,
  options: { token?: vscode.CancellationToken; progress?: (value: ProgressValue) => void } = {},
): Promise<ResultOf<C>> {
  try {
    return await ctx.sidecar.execute(command, args, options);
  } catch (error) {
    const data = errorData(error);
    if (data?.action !== "machine.up" || !(error instanceof ResponseError)) {
      throw error;
    }
    const choice = await vscode.window.showErrorMessage(requestErrorMessage("", error), "Start Machine");
    if (choice !== "Start Machine") {
      throw new HandledError();
    }
    await startMachine(ctx, data.target);
    return ctx.sidecar.execute(command, args, options);
  }
}

/** Runs a long sidecar operation under a cancellable notification fed by `$/progress`. */
function withProgress<T>(
  title: string,
  run: (token: vscode.CancellationToken, progress: (value: ProgressValue) => void) => Promise<T>,
): Thenable<T> {
  return vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title, cancellable: true },
    (reporter, token) => {
      let last = 0;
      return run(token, (value) => {
        if (value.kind === "end") {
          return;
        }
        const increment = value.percentage !== undefined ? value.percentage - last : undefined;
        last = value.percentage ?? last;
        reporter.report({ message: value.message, increment });
      });
    },
  );
}

function jobs(ctx: Context, filter: JobFilter): JobInfo[] {
  const all = ctx.store.status?.jobs ?? [];
  return all.filter((j) => filter === "any" || (filter === "running" ? isRunning(j) : isEnded(j)));
}

async function pickJob(ctx: Context, filter: JobFilter, placeHolder: string): Promise<string | undefined> {
  const candidates = jobs(ctx, filter);
  if (!candidates.length) {
    const what = filter === "running" ? "running jobs" : filter === "ended" ? "finished jobs" : "jobs";
    void vscode.window.showInformationMessage(`Orch: there are no ${what}. Start one with Orch: Run Job….`);
    return undefined;
  }
  const picked = await vscode.window.showQuickPick(
    candidates.map((j) => ({ label: j.name, description: describeJob(j) })),
    { placeHolder },
  );
  return picked?.label;
}

/** The job a command acts on: the clicked tree item, a name passed in, or the user's pick. */
async function jobArg(ctx: Context, arg: unknown, filter: JobFilter, placeHolder: string) {
  if (typeof arg === "string") {
    return arg;
  }
  const node = arg as TreeNode | undefined;
  if (node?.kind === "job" && node.key) {
    return node.key;
  }
  return pickJob(ctx, filter, placeHolder);
}

/** Asks for a command, then a job name (suggested from the command); undefined if cancelled. */
async function askJob(
  ctx: Context,
  title: string,
  prompt: string,
): Promise<{ command: string; name: string } | undefined> {
  const command = await vscode.window.showInputBox({
    title: `${title} (1/2)`,
    prompt,
    placeHolder: "python train.py --epochs 3",
    ignoreFocusOut: true,
    validateInput: (v) => (v.trim() ? undefined : "Enter a command."),
  });
  if (!command) {
    return undefined;
  }
  const taken = (ctx.store.status?.jobs ?? []).map((j) => j.name);
  const name = await vscode.window.showInputBox({
    title: `${title} (2/2)`,
    prompt: "Job name (the tmux session and log folder on the machine)",
    value: suggestJobName(command, taken),
    ignoreFocusOut: true,
    validateInput: validateJobName,
  });
  return name ? { command, name } : undefined;
}

async function runJob(ctx: Context): Promise<void> {
  const asked = await askJob(
    ctx,
    "Orch: Run Job",
    "Command to run on the machine, in the synced project folder",
  );
  if (!asked) {
    return;
  }
  const job = await withMachine(ctx, "orch.jobs.run", asked);
  vscode.window.setStatusBarMessage(`$(play) Orch: started job ${job.name}`, 5_000);
}

async function debugJob(ctx: Context): Promise<void> {
  const asked = await askJob(
    ctx,
    "Orch: Debug Job",
    "Python command to debug on the machine (it waits for the debugger)",
  );
  if (!asked) {
    return;
  }
  const session = await withProgress(`Orch: starting ${asked.name} under debugpy`, (token, progress) =>
    withMachine(ctx, "orch.debug.start", asked, { token, progress }),
  );
  await ctx.debug.attach(session.name, session.configuration);
}

function attach(ctx: Context, name: string): void {
  const python = ctx.sidecar.interpreter?.path ?? "python3";
  const terminal = vscode.window.createTerminal({
    name: `Orch: attach ${name}`,
    shellPath: orchCliFor(python, fs.existsSync),
    shellArgs: ["attach", name],
  });
  terminal.show();
}

async function jobActions(ctx: Context): Promise<void> {
  const name = await pickJob(ctx, "any", "Pick a job");
  if (!name) {
    return;
  }
  const job = jobs(ctx, "any").find((j) => j.name === name);
  const actions = isRunning(job!)
    ? ["Show Logs", "Attach", "Stop", "Restart"]
    : ["Show Logs", "Restart", "Remove"];
  const action = await vscode.window.showQuickPick(actions, { placeHolder: `${name}: ${describeJob(job!)}` });
  const command: Record<string, string> = {
    "Show Logs": "orch.showJobLogs",
    Attach: "orch.attachJob",
    Stop: "orch.stopJob",
    Restart: "orch.restartJob",
    Remove: "orch.removeJob",
  };
  if (action) {
    await vscode.commands.executeCommand(command[action], name);
  }
}

async function forwardPort(ctx: Context): Promise<void> {
  const local = await vscode.window.showInputBox({
    title: "Orch: Forward Port",
    prompt: "Local port (localhost:PORT on this computer)",
    placeHolder: "8888",
    validateInput: (v) => validatePort(v),
  });
  if (!local) {
    return;
  }
  const remote = await vscode.window.showInputBox({
    title: "Orch: Forward Port",
    prompt: "Port on the machine (empty for the same port)",
    placeHolder: local,
    validateInput: (v) => validatePort(v, true),
  });
  if (remote === undefined) {
    return;
  }
  const port = await withMachine(ctx, "orch.ports.add", {
    local_port: Number(local),
    remote_port: remote.trim() ? Number(remote) : undefined,
  });
  vscode.window.setStatusBarMessage(
    `$(plug) Orch: localhost:${port.local_port} → ${port.remote_host}:${port.remote_port}`,
    5_000,
  );
}

/** Stop (or terminate) a machine; while jobs run there, only once the user confirms (a stop
 * may end them): the sidecar refuses with JobsRunning, naming them, and is asked again. */
async function downMachine(
  ctx: Context,
  command: "orch.machine.down" | "orch.machine.terminate",
  args: { machine?: string },
): Promise<unknown> {
  const title = `Orch: ${command === "orch.machine.down" ? "stopping" : "terminating"} ${args.machine ?? "the machine"}`;
  const send = (force: boolean) =>
    withProgress(title, (token) => ctx.sidecar.execute(command, { ...args, force }, { token }));
  try {
    return await send(false);
  } catch (error) {
    if (errorData(error)?.kind !== "JobsRunning" || !(error instanceof ResponseError)) {
      throw error;
    }
    const answer = await vscode.window.showWarningMessage(
      `${error.message}.`,
      { modal: true },
      command === "orch.machine.down" ? "Stop Anyway" : "Terminate Anyway",
    );
    if (!answer) {
      return undefined;
    }
    return send(true);
  } finally {
    void ctx.refreshMachines();
  }
}

/** Terminate after a modal that names what is deleted and what would be lost. */
async function terminateMachine(ctx: Context, arg: unknown): Promise<unknown> {
  const args = machineArg(ctx, arg);
  const plan = await ctx.sidecar.execute("orch.machine.terminatePlan", args);
  const message = terminateMessage(plan);
  if (!message) {
    void vscode.window.showInformationMessage(`Orch: ${plan.machine} has nothing to terminate.`);
    return undefined;
  }
  const answer = await vscode.window.showWarningMessage(message, { modal: true }, "Terminate");
  return answer === "Terminate" ? downMachine(ctx, "orch.machine.terminate", args) : undefined;
}

/** Orch: Select Machine…: every machine of orch.toml with kind, state and $/h; the pick
 * becomes the machine the editor acts on (in the running sidecar: no restart). */
async function selectMachine(ctx: Context, arg: unknown): Promise<void> {
  // A name (a click on a machine of the Orch view), the view's item (its context menu), or ask.
  const node = arg as TreeNode | undefined;
  let name = typeof arg === "string" ? arg : node?.kind === "machine" ? node.key : undefined;
  if (name === undefined) {
    const list = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: "Orch: reading the machines" },
      () => ctx.sidecar.execute("orch.machine.list", {}),
    );
    const picked = await vscode.window.showQuickPick(pickItems(list, ctx.store.status?.machine), {
      title: "Orch: Select Machine",
      placeHolder: "The machine Up, Down, jobs, sync, ports and debug act on",
      matchOnDescription: true,
    });
    if (!picked) {
      return;
    }
    name = picked.machine;
  }
  const info = await ctx.sidecar.execute("orch.machine.select", { machine: name });
  await ctx.selectMachine(name);
  vscode.window.setStatusBarMessage(`$(vm) Orch: using ${info.name} (${info.kind}, ${info.state})`, 5_000);
  void ctx.refreshMachines();
}

// These ids must differ from the sidecar's command names (`orch.status`, `orch.jobs.run`…):
// vscode-languageclient registers every command the server advertises under its own name.
/** Profile GPU Service: one `orch.profile.run`; its table is shown, its files stay in the
 * workspace (`profiles/<job>/`: trace.json, summary.json, flame.svg with py-spy). */
async function profileGpu(ctx: Context): Promise<void> {
  const model = await vscode.window.showQuickPick(["birefnet", "sam2"], {
    title: "Orch: Profile GPU Service",
    placeHolder: "Which model's workload?",
  });
  if (!model) {
    return;
  }
  const options = await vscode.window.showQuickPick(
    [
      { label: "py-spy flame graph", key: "py_spy", description: "also record flame.svg", picked: true },
      { label: "random weights", key: "random_weights", description: "no checkpoint on the machine" },
    ],
    { title: "Orch: Profile GPU Service", placeHolder: "Options (Enter to start)", canPickMany: true },
  );
  if (!options) {
    return;
  }
  const chosen = new Set(options.map((o) => o.key));
  const args = {
    model: model as "birefnet" | "sam2",
    py_spy: chosen.has("py_spy"),
    random_weights: chosen.has("random_weights"),
  };
  const result = await withProgress(`Orch: profiling ${model}`, (token, progress) =>
    ctx.sidecar.execute("orch.profile.run", args, { token, progress }),
  );
  const doc = await vscode.workspace.openTextDocument({
    content: result.table || JSON.stringify(result.summary, null, 2),
    language: "plaintext",
  });
  await vscode.window.showTextDocument(doc, { preview: false });
  const trace = result.files.find((f) => f.endsWith("trace.json"));
  const choice = await vscode.window.showInformationMessage(
    `Orch: profile saved in ${vscode.workspace.asRelativePath(result.local_dir)}`,
    "Reveal Trace",
  );
  if (choice && trace) {
    await vscode.commands.executeCommand("revealInExplorer", vscode.Uri.file(trace));
  }
}

export function registerCommands(ctx: Context): vscode.Disposable[] {
  const handlers: Record<string, [string, (...args: unknown[]) => unknown]> = {
    "orch.up": ["Up", (arg) => startMachine(ctx, arg)],
    "orch.down": ["Down", (arg) => downMachine(ctx, "orch.machine.down", machineArg(ctx, arg))],
    "orch.terminateMachine": ["Terminate", (arg) => terminateMachine(ctx, arg)],
    "orch.selectMachine": ["Select Machine", (arg) => selectMachine(ctx, arg)],
    "orch.refreshMachines": ["Refresh Machines", () => ctx.refreshMachines()],
    "orch.showStatus": [
      "Status",
      async () => {
        const status = await ctx.sidecar.execute("orch.status", {});
        void vscode.window.showInformationMessage(`Orch: ${statusSummary(status)}`);
      },
    ],
    "orch.runJob": ["Run Job", () => runJob(ctx)],
    "orch.debugJob": ["Debug Job", () => debugJob(ctx)],
    "orch.showJobLogs": [
      "Show Job Logs",
      async (arg) => {
        const name = await jobArg(ctx, arg, "any", "Show the logs of which job?");
        return name && ctx.logs.show(name);
      },
    ],
    "orch.attachJob": [
      "Attach to Job",
      async (arg) => {
        const name = await jobArg(ctx, arg, "running", "Attach to which job?");
        return name && attach(ctx, name);
      },
    ],
    "orch.stopJob": [
      "Stop Job",
      async (arg) => {
        const name = await jobArg(ctx, arg, "running", "Stop which job?");
        return name && ctx.sidecar.execute("orch.jobs.stop", { name });
      },
    ],
    "orch.restartJob": [
      "Restart Job",
      async (arg) => {
        const name = await jobArg(ctx, arg, "any", "Restart which job?");
        return name && ctx.sidecar.execute("orch.jobs.restart", { name });
      },
    ],
    "orch.removeJob": [
      "Remove Job",
      async (arg) => {
        const name = await jobArg(ctx, arg, "ended", "Remove which job?");
        return name && ctx.sidecar.execute("orch.jobs.rm", { name });
      },
    ],
    "orch.jobs": ["Jobs", () => jobActions(ctx)],
    "orch.pickJob": ["Pick Job", (filter) => pickJob(ctx, (filter as JobFilter) ?? "any", "Pick a job")],
    "orch.startSync": [
      "Start Sync",
      () =>
        withProgress("Orch: starting sync", (token, progress) =>
          withMachine(ctx, "orch.sync.start", {}, { token, progress }),
        ).then((status) => {
          if (status.detail?.startsWith("sync already runs")) {
            vscode.window.setStatusBarMessage(`$(sync) Orch: ${status.detail}`, 5_000);
          }
        }),
    ],
    "orch.stopSync": ["Stop Sync", () => ctx.sidecar.execute("orch.sync.stop", {})],
    "orch.syncNow": [
      "Sync Now",
      () =>
        withProgress("Orch: syncing", (token, progress) =>
          withMachine(ctx, "orch.sync.now", {}, { token, progress }),
        ),
    ],
    "orch.writeSshConfig": [
      "Write SSH Config",
      async () => {
        const result = await ctx.sidecar.execute("orch.ssh.writeConfig", {});
        void vscode.window.showInformationMessage(sshConfigMessage(result));
      },
    ],
    "orch.forwardPort": ["Forward Port", () => forwardPort(ctx)],
    "orch.stopForwarding": [
      "Stop Forwarding Port",
      (arg) => {
        const node = arg as TreeNode | undefined;
        if (!node?.key) {
          return undefined;
        }
        const reverse = node.key.startsWith("R");
        return ctx.sidecar.execute("orch.ports.remove", {
          local_port: Number(reverse ? node.key.slice(1) : node.key),
          reverse,
        });
      },
    ],
    "orch.openConfigProblem": ["Open orch.toml", (index) => openConfigProblem(ctx, Number(index ?? 0) || 0)],
    "orch.createConfig": [
      "Create orch.toml",
      async () => {
        const result = await ctx.sidecar.execute("orch.config.init", {});
        await vscode.window.showTextDocument(vscode.Uri.file(result.path));
        if (!result.created) {
          vscode.window.setStatusBarMessage("$(info) Orch: orch.toml exists already; opened it", 5_000);
        }
      },
    ],
    "orch.profileGpu": ["Profile GPU Service", () => profileGpu(ctx)],
    "orch.restartSidecar": ["Restart Sidecar", () => ctx.sidecar.restart()],
    "orch.showOutput": ["Show Sidecar Output", () => ctx.output.show()],
  };
  return Object.entries(handlers).map(([id, [action, handler]]) =>
    vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      try {
        return await handler(...args);
      } catch (error) {
        void reportError(ctx, action, error);
        return undefined;
      }
    }),
  );
}
