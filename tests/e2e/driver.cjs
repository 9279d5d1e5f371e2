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

async function checkContributions(page) {
  const expected = [
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
  await answerInput(page, /Port on the machine/, "");
  const sidebar = await openOrchView(page);
  const tree = await poll(`the Orch view to list localhost:${port}`, () => sidebar.innerText(),
    (t) => t.includes(`localhost:${port}`) && /active/.test(t), 15_000);
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
  // The sidecar starts and reports the embedded local machine and no jobs.
  const text = await waitStatusBar(page, /local: (stopped|running)[\s\S]*0 running/, 60_000);
  mark("status_bar_ready_ms");
  log(`status bar: ${oneLine(text)}`);
  await screenshot(page, "01-ready");
  await checkContributions(page);
  await upMachine(page);
  await startSync(page);
  await forwardPort(page);
  await writeSshConfig(page);
  await jobFlow(page);
  await attachAndStop(page);
  await checkTree(page);
  await checkDebugPicker(page);
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
