/**
 * Shows a job's log in an output channel or a read-only terminal named after the job: one
 * `orch.jobs.follow` request, after which the sidecar streams the log from its beginning and
 * then its new output as `orch/log` notifications until the job ends.
 */

import * as vscode from "vscode";
import type { JobLogsView } from "./common/settings";
import type { LogChunk } from "./protocol";
import type { Sidecar } from "./sidecar";

interface LogView {
  append(text: string): void;
  show(): void;
  dispose(): void;
}

function outputChannelView(name: string): LogView {
  const channel = vscode.window.createOutputChannel(`Orch: job ${name}`);
  return {
    append: (text) => channel.append(text),
    show: () => channel.show(true),
    dispose: () => channel.dispose(),
  };
}

function terminalView(name: string, onClose: () => void): LogView {
  const writer = new vscode.EventEmitter<string>();
  const pending: string[] = [];
  let opened = false;
  const pty: vscode.Pseudoterminal = {
    onDidWrite: writer.event,
    open: () => {
      opened = true;
      pending.splice(0).forEach((text) => writer.fire(text));
    },
    close: onClose,
  };
  const terminal = vscode.window.createTerminal({ name: `Orch: job ${name}`, pty });
  return {
    append: (text) => {
      const crlf = text.replace(/\r?\n/g, "\r\n");
      if (opened) {
        writer.fire(crlf);
      } else {
        pending.push(crlf);
      }
    },
    show: () => terminal.show(true),
    dispose: () => {
      terminal.dispose();
      writer.dispose();
    },
  };
}

export class JobLogs implements vscode.Disposable {
  private readonly views = new Map<string, LogView>();
  private readonly following = new Set<string>();
  private readonly subscriptions: vscode.Disposable[];

  constructor(
    private readonly sidecar: Sidecar,
    private readonly where: JobLogsView,
  ) {
    this.subscriptions = [
      sidecar.onLog((chunk: LogChunk) => this.views.get(chunk.name)?.append(chunk.text)),
      // A restarted sidecar follows nothing: the next show must ask again.
      sidecar.onDidChangeState((state) => state !== "running" && this.following.clear()),
    ];
  }

  async show(name: string): Promise<void> {
    let view = this.views.get(name);
    if (view && this.following.has(name)) {
      view.show();
      return;
    }
    view?.dispose();
    view =
      this.where === "terminal"
        ? terminalView(name, () => this.forget(name))
        : outputChannelView(name);
    this.views.set(name, view);
    view.show();
    this.following.add(name);
    try {
      await this.sidecar.execute("orch.jobs.follow", { name });
    } catch (error) {
      this.following.delete(name);
      throw error;
    }
  }

  /** The job ended: the sidecar stops streaming it, so the next show fetches afresh. */
  ended(name: string): void {
    this.following.delete(name);
  }

  private forget(name: string): void {
    this.following.delete(name);
    this.views.delete(name);
    void this.sidecar.execute("orch.jobs.unfollow", { name }).catch(() => undefined);
  }

  dispose(): void {
    for (const subscription of this.subscriptions) {
      subscription.dispose();
    }
    this.views.forEach((view) => view.dispose());
    this.views.clear();
  }
}
