/**
 * Which Python runs the sidecar: the `orch.python` setting, else the Python extension's active
 * interpreter, else `python3` from PATH. Pure apart from the lookup the caller passes in.
 */

export type InterpreterSource = "setting" | "pythonExtension" | "default";

export interface Interpreter {
  path: string;
  source: InterpreterSource;
}

export const DEFAULT_PYTHON = "python3";

export async function resolveInterpreter(
  setting: string,
  activePythonExtensionInterpreter: () => Promise<string | undefined>,
): Promise<Interpreter> {
  if (setting.trim()) {
    return { path: setting.trim(), source: "setting" };
  }
  let fromExtension: string | undefined;
  try {
    fromExtension = await activePythonExtensionInterpreter();
  } catch {
    // A broken or still-loading Python extension must not keep the sidecar from starting.
    fromExtension = undefined;
  }
  if (fromExtension?.trim()) {
    return { path: fromExtension.trim(), source: "pythonExtension" };
  }
  return { path: DEFAULT_PYTHON, source: "default" };
}

/** The argv that starts the sidecar with an interpreter. */
export function sidecarCommand(python: string): { command: string; args: string[] } {
  return { command: python, args: ["-m", "sidecar"] };
}

/**
 * The `orch` CLI that belongs to an interpreter: the script next to it when the interpreter
 * lives in a virtual environment's bin folder, else `orch` from PATH.
 */
export function orchCliFor(python: string, exists: (path: string) => boolean): string {
  const slash = python.lastIndexOf("/");
  if (slash > 0) {
    const candidate = `${python.slice(0, slash)}/orch`;
    if (exists(candidate)) {
      return candidate;
    }
  }
  return "orch";
}

export function describeInterpreter(interpreter: Interpreter): string {
  switch (interpreter.source) {
    case "setting":
      return `${interpreter.path} (from the orch.python setting)`;
    case "pythonExtension":
      return `${interpreter.path} (the Python extension's interpreter)`;
    case "default":
      return `${interpreter.path} (from PATH; set orch.python to choose another)`;
  }
}
