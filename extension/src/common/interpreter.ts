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

/** Run by the interpreter before the sidecar starts: its version, orch's, what is missing. */
export const PREFLIGHT_SCRIPT = [
  "import importlib.util, json, sys",
  'r = {"python": "%d.%d.%d" % sys.version_info[:3]}',
  "try:",
  "    import sidecar",
  '    r["orch"] = str(getattr(sidecar, "__version__", "?"))',
  '    r["missing"] = [m for m in ("pygls", "lsprotocol", "pydantic") if importlib.util.find_spec(m) is None]',
  "except Exception as e:",
  '    r["error"] = "%s: %s" % (type(e).__name__, e)',
  "print(json.dumps(r))",
].join("\n");

export const MIN_PYTHON: readonly [number, number] = [3, 11];

export type PreflightProblem = "notFound" | "notPython" | "tooOld" | "noOrch" | "orchVersion";
export type Preflight = { ok: true; python: string; orch: string } | { ok: false; problem: PreflightProblem; message: string };

/** What running PREFLIGHT_SCRIPT gave: a spawn error code, or the process's output. */
export interface PreflightRun {
  errorCode?: string;
  exitCode?: number | null;
  stdout: string;
  stderr: string;
}

function where(interpreter: Interpreter): string {
  switch (interpreter.source) {
    case "setting":
      return `${interpreter.path} (the orch.python setting)`;
    case "pythonExtension":
      return `${interpreter.path} (the Python extension's interpreter)`;
    case "default":
      return `${interpreter.path} (from PATH, as orch.python is empty)`;
  }
}

function majorMinor(version: string): string {
  return version.split(".").slice(0, 2).join(".");
}

/** Judges the preflight run: one clear sentence on what is wrong, or the versions found. */
export function judgePreflight(interpreter: Interpreter, run: PreflightRun, extensionVersion: string): Preflight {
  if (run.errorCode === "ENOENT" || run.errorCode === "EACCES") {
    const what = run.errorCode === "ENOENT" ? "was not found" : "cannot be run (permission denied)";
    return { ok: false, problem: "notFound", message: `The Python interpreter ${where(interpreter)} ${what}.` };
  }
  let result: { python?: string; orch?: string; missing?: string[]; error?: string } | undefined;
  try {
    result = JSON.parse(run.stdout.trim().split("\n").pop() ?? "") as typeof result;
  } catch {
    result = undefined;
  }
  if (!result?.python) {
    const detail = (run.stderr.trim().split("\n").pop() ?? "").slice(0, 200);
    return {
      ok: false,
      problem: "notPython",
      message: `${where(interpreter)} did not run as a Python interpreter${detail ? `: ${detail}` : ""}.`,
    };
  }
  const [major, minor] = result.python.split(".").map(Number);
  if (major < MIN_PYTHON[0] || (major === MIN_PYTHON[0] && minor < MIN_PYTHON[1])) {
    return {
      ok: false,
      problem: "tooOld",
      message: `Orch needs Python ${MIN_PYTHON.join(".")} or newer; ${where(interpreter)} is Python ${result.python}.`,
    };
  }
  if (result.error || result.orch === undefined || result.missing?.length) {
    const missing = result.missing?.length ? ` (missing: ${result.missing.join(", ")})` : "";
    return {
      ok: false,
      problem: "noOrch",
      message: `Orch is not installed for ${where(interpreter)}${missing}. Install it there (${interpreter.path} -m pip install orch) or choose an interpreter that has it.`,
    };
  }
  if (majorMinor(result.orch) !== majorMinor(extensionVersion)) {
    return {
      ok: false,
      problem: "orchVersion",
      message: `${where(interpreter)} has orch ${result.orch}, but this extension needs orch ${majorMinor(extensionVersion)}.x. Install that version there (${interpreter.path} -m pip install "orch==${majorMinor(extensionVersion)}.*") or choose another interpreter.`,
    };
  }
  return { ok: true, python: result.python, orch: result.orch };
}
