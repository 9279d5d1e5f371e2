/**
 * The last OrchStatus the sidecar pushed, and the sidecar's connection state, with one change
 * event. Views read from here; nothing polls.
 */

import * as vscode from "vscode";
import type { SidecarState } from "./common/format";
import type { OrchStatus } from "./protocol";

export class StatusStore implements vscode.Disposable {
  private _status: OrchStatus | undefined;
  private _sidecar: SidecarState = "starting";
  private readonly emitter = new vscode.EventEmitter<{ before: OrchStatus | undefined }>();
  readonly onDidChange = this.emitter.event;

  get status(): OrchStatus | undefined {
    return this._status;
  }

  get sidecar(): SidecarState {
    return this._sidecar;
  }

  setStatus(status: OrchStatus): void {
    const before = this._status;
    this._status = status;
    this.emitter.fire({ before });
  }

  setSidecar(state: SidecarState): void {
    this._sidecar = state;
    this.emitter.fire({ before: this._status });
  }

  dispose(): void {
    this.emitter.dispose();
  }
}
