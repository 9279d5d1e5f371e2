// Drives the orch extension inside code-server from headless Chromium (playwright-core).
// Started by scripts/test_e2e.sh, which passes E2E_URL (the workbench with the test folder
// open), E2E_ARTIFACTS (where screenshots go), E2E_PROFILE (a fresh browser profile) and
// E2E_ORCH_HOME (the sidecar's state folder, to find its process).
"use strict";

const fs = require("node:fs");
const net = require("node:net");
const path = require("node:path");
const { chromium } = require("playwright-core");

const URL = process.env.E2E_URL;
const ARTIFACTS = process.env.E2E_ARTIFACTS;
const PROFILE = process.env.E2E_PROFILE;
const ORCH_HOME = process.env.E2E_ORCH_HOME;
const WORKSPACE = process.env.E2E_WORKSPACE;
const PYTHON = process.env.E2E_PYTHON;
const BROKEN_PYTHON = process.env.E2E_BROKEN_PYTHON;
// How many Debug Job… runs in a row must stop at the editor's breakpoint (issue 14: 10 of 10).
const DEBUG_RUNS = Number(process.env.E2E_DEBUG_RUNS || 10);
const JOB = "e2e-job";
// Long enough for the status bar to show it running; prints a line before and after.
const JOB_COMMAND = "echo orch-e2e-start; sleep 6; echo orch-e2e-done";

const t0 = Date.now();
const timings = {};
function log(message) {
  console.log(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)}s] ${message}`);
}
function mark(name) {
  timings[name] = Date.now() - t0;
}

async function poll(description, read, test, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await read().catch((error) => `<${error.message}>`);
    if (test(last)) {
      return last;
    }
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}; last seen: ${JSON.stringify(last)}`);
}

const statusBarText = (page) => page.locator("#workbench\\.parts\\.statusbar").innerText();
const waitStatusBar = (page, pattern, timeoutMs = 30_000) =>
  poll(`status bar to match ${pattern}`, () => statusBarText(page), (text) => pattern.test(text), timeoutMs);

async function screenshot(page, name) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  log(`screenshot ${file}`);
}

/**
 * Opens the command palette with `>query` typed in and returns its input. Right after a
 * terminal's process exits, the workbench can leave a just-opened palette inert (it cannot
 * be typed into or clicked); closing it with Escape and opening it again clears that, so
 * callers retry through `withPalette`.
 */
async function openPalette(page, query) {
  const input = page.locator(".quick-input-widget input");
  await page.keyboard.press("F1");
  await input.waitFor({ state: "visible", timeout: 5_000 });
  await input.fill(`>${query}`, { timeout: 5_000 });
}

async function withPalette(page, query, action) {
  for (let attempt = 1; ; attempt++) {
    try {
      await openPalette(page, query);
      return await action();
    } catch (error) {
      if (attempt === 3) {
        throw error;
      }
      log(`palette not usable (${error.message.split("\n")[0]}); retrying`);
      await page.keyboard.press("Escape");
      await page.waitForTimeout(500);
    }
  }
}

/** The palette's visible command titles for `query`. */
async function paletteEntries(page, query) {
  return withPalette(page, query, async () => {
    const rows = page.locator(".quick-input-widget .quick-input-list .monaco-list-row");
    await rows.first().waitFor({ state: "visible", timeout: 5_000 }).catch(() => undefined);
    return rows.allInnerTexts();
  });
}

/** Runs a command from the palette by its exact title ("Orch: Run Job…"). */
async function runCommand(page, title) {
  const row = page
    .locator(".quick-input-widget .quick-input-list .monaco-list-row")
    .filter({ has: page.locator(".label-name", { hasText: new RegExp(`^${escape(title)}$`) }) })
    .first();
  await withPalette(page, title, () => row.click({ timeout: 5_000 }));
}

function escape(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Types into the quick input that a command opened and presses Enter. */
async function answerInput(page, titlePattern, value) {
  const widget = page.locator(".quick-input-widget");
  await poll(`an input titled ${titlePattern}`, () => widget.innerText(), (t) => titlePattern.test(t), 10_000);
  const input = widget.locator("input");
  await input.fill(value);
  await input.press("Enter");
  // VS Code accepts an input box only once the extension's validateInput has answered (a
  // round trip to the extension host): until then the box stays open, and a command palette
  // opened meanwhile hides it, which cancels the input (the command then does nothing).
  await poll(`the input titled ${titlePattern} to be accepted`, async () => (await widget.isVisible()) ? await widget.innerText() : "",
    (t) => !titlePattern.test(t), 10_000);
}

async function pickQuickItem(page, label) {
  const row = page.locator(".quick-input-widget .quick-input-list .monaco-list-row", { hasText: label }).first();
  await row.waitFor({ state: "visible", timeout: 10_000 });
  await row.click();
}

async function notificationsText(page) {
  const toasts = page.locator(".notifications-toasts");
  return (await toasts.count()) ? toasts.innerText() : "";
}

/** Clicks a button of a notification toast whose text matches `pattern`. */
async function clickToastButton(page, pattern, label) {
  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: pattern }).first();
  await toast.waitFor({ state: "visible", timeout: 15_000 });
  await toast.locator(".monaco-button", { hasText: label }).first().click();
}

async function toastButtons(page, pattern) {
  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: pattern }).first();
  await toast.waitFor({ state: "visible", timeout: 15_000 });
  return toast.locator(".monaco-button").allInnerTexts();
}

async function clearNotifications(page) {
  await runCommand(page, "Notifications: Clear All Notifications").catch(() => undefined);
}

/** Item 4: a broken orch.python gives one clear message with its buttons, and no retries. */
async function brokenInterpreter(page) {
  const message = `The Python interpreter ${BROKEN_PYTHON} (the orch.python setting) was not found`;
  await poll("the message about the broken orch.python", () => notificationsText(page),
    (t) => t.includes(message), 60_000);
  const buttons = await toastButtons(page, message);
  for (const label of ["Select Interpreter", "Open Settings", "Show Output"]) {
    if (!buttons.some((b) => b.includes(label))) {
      throw new Error(`the interpreter message lacks "${label}"; it has ${JSON.stringify(buttons)}`);
    }
  }
  let text = await waitStatusBar(page, /orch: sidecar stopped/, 10_000);
  await screenshot(page, "00-broken-interpreter");
  // Nothing is retried: the state stays put and no restart countdown appears.
  await page.waitForTimeout(3_000);
  text = await statusBarText(page);
  const toasts = await notificationsText(page);
  if (!/sidecar stopped/.test(text) || /restarting/.test(text + toasts) || /couldn't create connection/i.test(toasts)) {
    throw new Error(`expected no retries; status bar: ${oneLine(text)}; toasts: ${oneLine(toasts)}`);
  }
  log(`broken orch.python: one message with ${JSON.stringify(buttons)}; status bar: ${oneLine(text)}`);
  // Fixing the setting restarts the sidecar: no window reload.
  fs.writeFileSync(path.join(WORKSPACE, ".vscode", "settings.json"),
    JSON.stringify({ "orch.python": PYTHON, "orch.logLevel": "info" }));
  await clearNotifications(page);
}

const TOML_BROKEN_ON_DISK = '[project]\nname = "e2e"\nnmae = "typo"\n';
// Typed without a last newline (a typed newline can pick a suggestion the sidecar offers).
const TOML_BROKEN_IN_EDITOR = '[project]\nname = "e2e"\n\n[sync]\ndebounce_ms = "soon"';
const TOML_GOOD = '[project]\nname = "e2e"';

/** Replaces the text of the active editor as typed input; returns what the editor shows. */
async function typeOver(page, text) {
  await page.locator(".editor-group-container .monaco-editor .view-lines").first().click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.type(text); // key by key, as a user types
  await page.keyboard.press("Escape"); // close a suggestion list, if one opened
  return page.locator(".editor-group-container .monaco-editor .view-lines").first().innerText();
}

async function problemsPanel(page) {
  const panel = page.locator("#workbench\\.parts\\.panel");
  return (await panel.count()) ? panel.innerText() : "";
}

async function showProblems(page) {
  await withPalette(page, "Focus on Problems View", async () => {
    const row = page.locator(".quick-input-widget .quick-input-list .monaco-list-row", { hasText: /Focus on Problems View/ }).first();
    await row.click({ timeout: 5_000 });
  });
}

/** Item 2: orch.toml checked as it changes: status bar, Problems panel, on open and after an edit. */
async function invalidConfig(page) {
  const file = path.join(WORKSPACE, "orch.toml");
  fs.writeFileSync(file, TOML_BROKEN_ON_DISK);
  let text = await waitStatusBar(page, /orch\.toml has errors/, 20_000);
  log(`status bar with a broken orch.toml: ${oneLine(text)}`);
  // Clicking it opens the file at the problem.
  await page.locator("#workbench\\.parts\\.statusbar .statusbar-item", { hasText: "orch.toml has errors" }).first().click();
  await poll("orch.toml to open in the editor", () => page.locator(".monaco-editor .view-lines").first().innerText(),
    (t) => t.includes("nmae"), 15_000);
  await showProblems(page);
  let problems = await poll("the Problems panel to show the diagnostic at line 3", () => problemsPanel(page),
    (t) => /unknown key 'nmae'; did you mean 'name'\?/.test(t) && /\[Ln 3, Col 1\]/.test(t), 20_000);
  log(`Problems panel (on open): ${oneLine(problems).slice(0, 200)}`);
  await screenshot(page, "01b-config-problem-on-open");

  // Break it elsewhere by typing in the editor: the diagnostic follows the text.
  const typed = await typeOver(page, TOML_BROKEN_IN_EDITOR);
  log(`editor text after typing: ${JSON.stringify(typed)}`);
  problems = await poll("the Problems panel to show the diagnostic at line 5 after the edit", () => problemsPanel(page),
    (t) => /sync\.debounce_ms: Input should be a valid integer/.test(t) && /\[Ln 5, Col 1\]/.test(t) && !/nmae/.test(t), 20_000);
  log(`Problems panel (after an edit): ${oneLine(problems).slice(0, 200)}`);
  await screenshot(page, "01c-config-problem-after-edit");

  // Fixing it clears the diagnostic; saving makes the sidecar use it.
  await typeOver(page, TOML_GOOD);
  await poll("the Problems panel to clear", () => problemsPanel(page),
    (t) => !/debounce_ms|nmae/.test(t), 20_000);
  await page.keyboard.press("Control+S");
  text = await waitStatusBar(page, /local: (stopped|running)[\s\S]*0 running/, 20_000);
  log(`status bar after the fix: ${oneLine(text)}`);
  await runCommand(page, "View: Close All Editors");
}

/** Items 3 and 5: Run Job with the machine stopped offers Start Machine and then runs the job;
 * the job fails, and its notification carries the exit code and its buttons. */
async function failingJobNeedsTheMachine(page) {
  await runCommand(page, "Orch: Run Job…");
  await answerInput(page, /Run Job \(1\/2\)/, "echo about-to-fail; sleep 1; exit 3");
  await answerInput(page, /Run Job \(2\/2\)/, "e2e-fails");
  const notRunning = "The local machine is not running.";
  const buttons = await toastButtons(page, notRunning);
  log(`error toast: "${notRunning}" with ${JSON.stringify(buttons)}`);
  await screenshot(page, "02a-machine-not-running");
  await clickToastButton(page, notRunning, "Start Machine");
  let text = await waitStatusBar(page, /local: running/, 30_000);
  log(`after Start Machine: ${oneLine(text)}`);
  const failed = "Job e2e-fails failed with exit code 3";
  await poll("the failed-job notification", () => notificationsText(page), (t) => t.includes(failed), 30_000);
  const jobButtons = await toastButtons(page, failed);
  if (!jobButtons.some((b) => b.includes("Show Logs")) || !jobButtons.some((b) => b.includes("Restart"))) {
    throw new Error(`the failed-job notification lacks its buttons: ${JSON.stringify(jobButtons)}`);
  }
  text = await waitStatusBar(page, /e2e-fails\s*failed \(exit 3\)/, 10_000);
  log(`failed job: notification with ${JSON.stringify(jobButtons)}; status bar: ${oneLine(text)}`);
  await screenshot(page, "02b-job-failed");
  await clearNotifications(page);
}

/** Start Sync when sync already runs: nothing to complain about. */
async function startSyncAgain(page) {
  await runCommand(page, "Orch: Start Sync");
  await page.waitForTimeout(1_500);
  const toasts = await notificationsText(page);
  if (/failed|already running/i.test(toasts)) {
    throw new Error(`Start Sync while sync runs raised: ${oneLine(toasts)}`);
  }
  log("Start Sync while sync runs: no error");
}

function treePorts(text) {
  return (text.match(/localhost:\d+/g) || []).sort();
}

async function setBreakpoint(page, file, line) {
  await runCommand(page, "Go to File...");
  const input = page.locator(".quick-input-widget input");
  await input.fill(file);
  await page.locator(".quick-input-widget .quick-input-list .monaco-list-row", { hasText: file }).first()
    .waitFor({ state: "visible", timeout: 15_000 });
  await input.press("Enter");
  await poll(`${file} to open`, () => page.locator(".monaco-editor .view-lines").first().innerText(),
    (t) => /def\s+work/.test(t), 15_000); // the editor renders spaces as U+00A0
  await runCommand(page, "Go to Line/Column...");
  await page.keyboard.insertText(String(line));
  await page.keyboard.press("Enter");
  await runCommand(page, "Debug: Toggle Breakpoint");
  await poll("a breakpoint glyph in the editor", () => page.locator(".codicon-debug-breakpoint").count(), (n) => n > 0, 10_000);
}

/** Item 1 (and 6): Debug Job… stops at the editor's breakpoint every time; the job's forward
 * leaves the Orch view when the job ends. */
async function debugRuns(page) {
  const sidebar = await openOrchView(page);
  const portsBefore = treePorts(await sidebar.innerText());
  await setBreakpoint(page, "debugme.py", 5); // `return total`: hit once per run
  const times = [];
  for (let run = 1; run <= DEBUG_RUNS; run++) {
    const name = `e2e-dbg-${run}`;
    const began = Date.now();
    await runCommand(page, "Orch: Debug Job…");
    await answerInput(page, /Debug Job \(1\/2\)/, "python3 debugme.py");
    await answerInput(page, /Debug Job \(2\/2\)/, name);
    const stopped = await poll(`run ${run}: the debugger to stop at the breakpoint`,
      () => page.locator("#workbench\\.parts\\.sidebar").innerText(),
      // The call stack's top frame is the breakpoint's line in work() (frames render a moment
      // after "Paused on breakpoint").
      (t) => /Paused on breakpoint\s+work\s+debugme\.py\s+5:1/i.test(t), 60_000);
    const stoppedMs = Date.now() - began;
    if (run === 1) {
      // The variables of the frame: Locals shows total = 6 (0 + 2 + 4).
      const sidebar = page.locator("#workbench\\.parts\\.sidebar");
      let vars = "";
      for (let attempt = 1; attempt <= 3 && !/total\s*[:=]?\s*6/.test(vars); attempt++) {
        await sidebar.getByText("Locals", { exact: true }).first().click(); // expand the scope
        vars = await poll("the Locals to show total = 6", () => sidebar.innerText(),
          (t) => /total\s*[:=]?\s*6/.test(t), 3_000).catch(() => "");
      }
      if (!vars) {
        throw new Error(`run ${run}: the Locals never showed total = 6: ${oneLine(await sidebar.innerText()).slice(0, 300)}`);
      }
      log(`variables: ${oneLine(vars).match(/Locals.*?Globals/)?.[0] ?? ""}`);
    }
    if (run === 1) {
      await screenshot(page, "11-debug-stopped");
    }
    // Clear the breakpoint's hits by continuing until the job ends.
    for (let i = 0; i < 10; i++) {
      await page.keyboard.press("F5");
      const done = await poll(`run ${run}: the debug session to end`,
        () => page.locator(".debug-toolbar").count().then(async (n) => (n ? page.locator(".debug-toolbar").isVisible() : false)),
        (visible) => !visible, 3_000).then(() => true, () => false);
      if (done) {
        break;
      }
    }
    await waitStatusBar(page, new RegExp(`0 running · ${name}\\s*succeeded`), 30_000);
    times.push(stoppedMs);
    log(`debug run ${run}/${DEBUG_RUNS}: stopped at the breakpoint ${stoppedMs} ms after Debug Job…`);
  }
  timings.debug_stop_ms = times;
  const side = await openOrchView(page);
  const tree = await poll("the debug jobs' forwards to leave the Orch view", () => side.innerText(),
    (t) => JSON.stringify(treePorts(t)) === JSON.stringify(portsBefore), 20_000);
  log(`after ${DEBUG_RUNS} debug jobs the Orch view lists ports ${JSON.stringify(treePorts(tree))} (as before)`);
  await screenshot(page, "12-debug-forwards-gone");
  await runCommand(page, "View: Close All Editors");
  await runCommand(page, "View: Show Explorer");
}

async function checkContributions(page) {
  const expected = [
    "Orch: Select Machine…",
    "Orch: Up",
    "Orch: Down",
    "Orch: Status",
    "Orch: Run Job…",
    "Orch: Debug Job…",
    "Orch: Show Job Logs",
    "Orch: Attach to Job",
    "Orch: Stop Job",
    "Orch: Start Sync",
    "Orch: Stop Sync",
    "Orch: Sync Now",
    "Orch: Write SSH Config",
    "Orch: Forward Port…",
    "Orch: Profile GPU Service…",
  ];
  // The palette renders only the rows in view, so ask for each title on its own.
  const missing = [];
  for (const title of expected) {
    const rows = await paletteEntries(page, title);
    if (!rows.some((row) => row.split("\n").includes(title))) {
      missing.push(`${title} (palette showed ${JSON.stringify(rows)})`);
    }
    await page.keyboard.press("Escape");
  }
  if (missing.length) {
    throw new Error(`palette lacks ${missing.join("; ")}`);
  }
  log(`palette lists all ${expected.length} Orch commands`);
}

async function checkDebugPicker(page) {
  await runCommand(page, "Debug: Select and Start Debugging");
  const text = await poll(
    "the debug picker to offer Orch: Attach to job",
    () => page.locator(".quick-input-widget .quick-input-list").innerText(),
    (t) => t.includes("Orch: Attach to job"),
    10_000,
  );
  log(`debug picker offers: ${text.split("\n").filter((l) => l.includes("Orch")).join(" | ")}`);
  await screenshot(page, "07-debug-picker");
  await page.keyboard.press("Escape");
}

async function openOrchView(page) {
  await runCommand(page, "View: Show Orch");
  const sidebar = page.locator("#workbench\\.parts\\.sidebar");
  await sidebar.waitFor({ state: "visible" });
  return sidebar;
}

/** The sidecar of this run: the `python -m sidecar` process whose ORCH_HOME is ours. */
function sidecarPid() {
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) {
      continue;
    }
    try {
      const argv = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      const env = fs.readFileSync(`/proc/${entry}/environ`, "utf8").split("\0");
      if (argv.includes("-m") && argv[argv.indexOf("-m") + 1] === "sidecar" && env.includes(`ORCH_HOME=${ORCH_HOME}`)) {
        return Number(entry);
      }
    } catch {
      // The process ended while we looked.
    }
  }
  return undefined;
}

async function upMachine(page) {
  await runCommand(page, "Orch: Up");
  const text = await waitStatusBar(page, /local: running[\s\S]*0 running/, 30_000);
  mark("machine_up_ms");
  log(`status bar: ${oneLine(text)}`);
  await screenshot(page, "02-machine-up");
}

async function startSync(page) {
  await runCommand(page, "Orch: Start Sync");
  const text = await waitStatusBar(page, /sync idle/, 30_000);
  mark("sync_idle_ms");
  log(`status bar: ${oneLine(text)}`);
}

async function stopSync(page) {
  await runCommand(page, "Orch: Stop Sync");
  const text = await waitStatusBar(page, /sync off/, 30_000);
  log(`status bar: ${oneLine(text)}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function forwardPort(page) {
  const port = await freePort();
  await runCommand(page, "Orch: Forward Port…");
  await answerInput(page, /Local port/, String(port));
  // Another port on the machine: the local machine is this computer, so a forward to the
  // same port would be pointless (orch says so and forwards nothing).
  let remote = await freePort();
  while (remote === port) {
    remote = await freePort();
  }
  await answerInput(page, /Port on the machine/, String(remote));
  const sidebar = await openOrchView(page);
  const listed = (t) => t.includes(`localhost:${port}`) && /active/.test(t);
  const tree = await poll(`the Orch view to list localhost:${port}`, () => sidebar.innerText(), listed, 15_000);
  log(`forwarded port ${port}: ${oneLine(tree)}`);
  await screenshot(page, "02-port-forwarded");
  await runCommand(page, "View: Show Explorer");
}

async function writeSshConfig(page) {
  await runCommand(page, "Orch: Write SSH Config");
  const text = await poll("a notification naming the written ssh config", () => notificationsText(page),
    (t) => /wrote SSH host \S+ to \S+config/.test(t), 15_000);
  log(`notification: ${oneLine(text).slice(0, 200)}`);
}

async function jobsQuickPick(page) {
  // The jobs item in the status bar opens a pick of the jobs, then of actions on one.
  await page.locator("#workbench\\.parts\\.statusbar .statusbar-item", { hasText: "0 running" }).first().click();
  await pickQuickItem(page, JOB);
  const actions = await poll("the actions of the picked job",
    () => page.locator(".quick-input-widget .quick-input-list").innerText(),
    (t) => t.includes("Show Logs") && t.includes("Restart") && t.includes("Remove"), 10_000);
  log(`job actions: ${oneLine(actions)}`);
  await page.keyboard.press("Escape");
}

async function jobFlow(page) {
  // Run a job on the local machine from the palette.
  await runCommand(page, "Orch: Run Job…");
  await answerInput(page, /Run Job \(1\/2\)/, JOB_COMMAND);
  await answerInput(page, /Run Job \(2\/2\)/, JOB);
  const runAt = Date.now();
  let text = await waitStatusBar(page, /1 running/, 30_000);
  mark("job_running_ms");
  log(`status bar: ${oneLine(text)} (${Date.now() - runAt} ms after submitting)`);
  if (!/local: running/.test(text)) {
    throw new Error(`expected the local machine running while the job runs; status bar: ${text}`);
  }
  await screenshot(page, "03-job-running");

  // The job completes: the status bar and a notification say so.
  text = await waitStatusBar(page, new RegExp(`0 running · ${JOB}\\s*succeeded`), 60_000);
  mark("job_done_ms");
  log(`status bar: ${oneLine(text)}`);
  await poll("a notification that the job succeeded", () => notificationsText(page),
    (t) => t.includes(`Job ${JOB} succeeded`), 10_000);
  await screenshot(page, "03-job-done");

  // Its logs are visible in the job's output channel.
  await runCommand(page, "Orch: Show Job Logs");
  await pickQuickItem(page, JOB);
  const panel = page.locator("#workbench\\.parts\\.panel");
  await poll("the job's log in the output panel", () => panel.innerText(),
    (t) => t.includes("orch-e2e-start") && t.includes("orch-e2e-done"), 20_000);
  log("job log shown in the output panel");
  await screenshot(page, "04-job-logs");
  await jobsQuickPick(page);
}

async function attachAndStop(page) {
  // A second, longer job: attach to its tmux session in a terminal, then stop it.
  const name = "e2e-attach";
  await runCommand(page, "Orch: Run Job…");
  await answerInput(page, /Run Job \(1\/2\)/, "for i in $(seq 300); do echo attach-tick-$i; sleep 0.5; done");
  await answerInput(page, /Run Job \(2\/2\)/, name);
  await waitStatusBar(page, /1 running/, 30_000);
  await runCommand(page, "Orch: Attach to Job");
  await pickQuickItem(page, name);
  const terminal = page.locator("#workbench\\.parts\\.panel .xterm-rows");
  const text = await poll("the attach terminal to show the job's output", () => terminal.innerText(),
    (t) => /attach-tick-\d+/.test(t), 30_000);
  log(`attach terminal: ${oneLine(text).slice(-120)}`);
  await screenshot(page, "05-attached");
  await runCommand(page, "Orch: Stop Job");
  await pickQuickItem(page, name);
  const bar = await waitStatusBar(page, new RegExp(`0 running · ${name}\\s*stopped`), 30_000);
  log(`status bar: ${oneLine(bar)}`);
}

async function checkTree(page) {
  const sidebar = await openOrchView(page);
  const tree = await poll("the Orch view to list the machine and the jobs", () => sidebar.innerText(),
    (t) => /Machines[\s\S]*local[\s\S]*running[\s\S]*Jobs[\s\S]*e2e-attach[\s\S]*stopped[\s\S]*e2e-job[\s\S]*succeeded[\s\S]*Ports/.test(t),
    10_000);
  log(`Orch view: ${oneLine(tree)}`);
  await screenshot(page, "06-tree");
}

/** The machine picker: every machine of orch.toml with kind and state; picking one applies it
 * in the running sidecar (no restart: the sidecar's pid stays). */
async function selectMachine(page) {
  const pid = sidecarPid();
  await runCommand(page, "Orch: Select Machine…");
  const widget = page.locator(".quick-input-widget");
  const listed = await poll("the machine picker to list the local machine", () => widget.innerText(),
    (t) => /local\s*local · running[\s\S]*project default/.test(t), 15_000);
  log(`machine picker: ${oneLine(listed)}`);
  await screenshot(page, "06b-machine-picker");
  await pickQuickItem(page, "local · running");
  const text = await waitStatusBar(page, /Orch: using local \(local, running\)/, 15_000);
  log(`status bar after the pick: ${oneLine(text)}`);
  if (sidecarPid() !== pid) {
    throw new Error(`selecting a machine restarted the sidecar (pid ${pid} -> ${sidecarPid()})`);
  }
}

async function crashAndRecover(page) {
  // Kill the sidecar: the extension says so, restarts it, and the state comes back.
  const pid = sidecarPid();
  if (!pid) {
    throw new Error(`no sidecar process found for ORCH_HOME=${ORCH_HOME}`);
  }
  process.kill(pid, "SIGKILL");
  log(`killed the sidecar (pid ${pid})`);
  let text = await waitStatusBar(page, /orch: restarting/, 10_000);
  log(`status bar: ${oneLine(text)}`);
  await poll("a notification about the restart", () => notificationsText(page),
    (t) => /the sidecar exited; restarting it in \d+s/.test(t), 10_000);
  await screenshot(page, "08-restarting");
  text = await waitStatusBar(page, /local: running/, 30_000);
  const again = sidecarPid();
  if (!again || again === pid) {
    throw new Error(`expected a new sidecar process after the restart (old ${pid}, now ${again})`);
  }
  log(`status bar after the restart (new pid ${again}): ${oneLine(text)}`);
  await screenshot(page, "09-restarted");
}

async function downMachine(page) {
  await runCommand(page, "Orch: Down");
  const text = await waitStatusBar(page, /local: stopped/, 30_000);
  log(`status bar: ${oneLine(text)}`);
  await screenshot(page, "10-machine-down");
}

const oneLine = (text) => text.replace(/\s+/g, " ").trim();

async function scenario(page) {
  await brokenInterpreter(page);
  // The sidecar starts and reports the embedded local machine and no jobs.
  const text = await waitStatusBar(page, /local: (stopped|running)[\s\S]*0 running/, 60_000);
  mark("status_bar_ready_ms");
  log(`status bar: ${oneLine(text)}`);
  await screenshot(page, "01-ready");
  await invalidConfig(page);
  await checkContributions(page);
  await failingJobNeedsTheMachine(page);
  await upMachine(page);
  await startSync(page);
  await startSyncAgain(page);
  await forwardPort(page);
  await writeSshConfig(page);
  await jobFlow(page);
  await attachAndStop(page);
  await checkTree(page);
  await selectMachine(page);
  await checkDebugPicker(page);
  await debugRuns(page);
  await crashAndRecover(page);
  await stopSync(page);
  await downMachine(page);
}

async function main() {
  const context = await chromium.launchPersistentContext(PROFILE, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-default-apps",
      "--no-first-run",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  let failed = false;
  try {
    log(`opening ${URL}`);
    await page.goto(URL);
    await page.locator(".monaco-workbench").waitFor({ timeout: 60_000 });
    mark("workbench_ms");
    log("workbench loaded");
    await scenario(page);
    log(`timings: ${JSON.stringify(timings)}`);
  } catch (error) {
    failed = true;
    console.error(`[e2e] FAILED: ${error.stack || error}`);
    await screenshot(page, "failure").catch(() => undefined);
    console.error(`[e2e] status bar: ${await statusBarText(page).catch(() => "?")}`);
    console.error(`[e2e] notifications: ${await notificationsText(page).catch(() => "?")}`);
    const dialogs = page.locator(".monaco-dialog-box");
    if (await dialogs.count().catch(() => 0)) {
      console.error(`[e2e] dialog: ${await dialogs.first().innerText().catch(() => "?")}`);
    }
  } finally {
    await context.close();
  }
  process.exit(failed ? 1 : 0);
}

main();
