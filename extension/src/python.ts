/**
 * The Python extension's active interpreter, through its public API (`ms-python.python`
 * exports `environments`). Returns undefined when the extension is absent or has none.
 */

import * as vscode from "vscode";

interface PythonEnvironmentsApi {
  getActiveEnvironmentPath(resource?: vscode.Uri): { path: string } | undefined;
  resolveEnvironment(
    env: { path: string } | string,
  ): Promise<{ executable: { uri?: vscode.Uri } } | undefined>;
  onDidChangeActiveEnvironmentPath: vscode.Event<unknown>;
}

async function environmentsApi(): Promise<PythonEnvironmentsApi | undefined> {
  const extension = vscode.extensions.getExtension<{ environments?: PythonEnvironmentsApi }>(
    "ms-python.python",
  );
  if (!extension) {
    return undefined;
  }
  const exports = extension.isActive ? extension.exports : await extension.activate();
  return exports?.environments;
}

export async function activeInterpreter(resource?: vscode.Uri): Promise<string | undefined> {
  const api = await environmentsApi();
  const active = api?.getActiveEnvironmentPath(resource);
  if (!api || !active) {
    return undefined;
  }
  const env = await api.resolveEnvironment(active);
  return env?.executable.uri?.fsPath;
}

/** Calls `listener` when the user picks another interpreter in the Python extension. */
export async function onActiveInterpreterChanged(
  listener: () => void,
): Promise<vscode.Disposable | undefined> {
  try {
    return (await environmentsApi())?.onDidChangeActiveEnvironmentPath(listener);
  } catch {
    return undefined;
  }
}
