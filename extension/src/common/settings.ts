/**
 * The extension's settings as types, and reading them once into a plain object. Pure: the
 * caller passes a getter (VS Code's `WorkspaceConfiguration.get`), so tests need no VS Code.
 */

export type LogLevel = "error" | "warning" | "info" | "debug";
export type JobLogsView = "outputChannel" | "terminal";
export type TraceLevel = "off" | "messages" | "verbose";

export interface Settings {
  /** Interpreter path from `orch.python`, `${workspaceFolder}` expanded; "" when unset. */
  python: string;
  /** Machine for Up/Down/Status; "" for the project's default. */
  machine: string;
  logLevel: LogLevel;
  jobLogsView: JobLogsView;
  notifyOnJobEnd: boolean;
  trace: TraceLevel;
}

type Getter = <T>(key: string) => T | undefined;

function oneOf<T extends string>(value: unknown, allowed: readonly T[], fallback: T): T {
  return allowed.includes(value as T) ? (value as T) : fallback;
}

export function expandWorkspaceFolder(value: string, workspaceFolder: string | undefined): string {
  if (!workspaceFolder) {
    return value;
  }
  return value.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
}

export function readSettings(get: Getter, workspaceFolder?: string): Settings {
  const str = (key: string): string => {
    const v = get<string>(key);
    return typeof v === "string" ? v.trim() : "";
  };
  return {
    python: expandWorkspaceFolder(str("python"), workspaceFolder),
    machine: str("machine"),
    logLevel: oneOf(get("logLevel"), ["error", "warning", "info", "debug"] as const, "info"),
    jobLogsView: oneOf(get("jobLogs.showIn"), ["outputChannel", "terminal"] as const, "outputChannel"),
    notifyOnJobEnd: get<boolean>("notifyOnJobEnd") ?? true,
    trace: oneOf(get("trace.server"), ["off", "messages", "verbose"] as const, "off"),
  };
}
