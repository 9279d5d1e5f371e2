// Test-only stand-in for the Python Debugger extension (ms-python.debugpy), which cannot be
// installed offline: for a `debugpy` attach with `connect`, VS Code talks DAP straight to the
// debugpy adapter at host:port, as the real extension does for that case. debugpy itself
// (on the machine) applies `pathMappings`, so breakpoints set in the editor work unchanged.
"use strict";

const vscode = require("vscode");

function activate(context) {
  context.subscriptions.push(
    vscode.debug.registerDebugAdapterDescriptorFactory("debugpy", {
      createDebugAdapterDescriptor(session) {
        const connect = session.configuration.connect || {};
        if (session.configuration.request !== "attach" || !connect.port) {
          throw new Error("the debugpy stand-in only attaches with `connect` (host and port)");
        }
        return new vscode.DebugAdapterServer(Number(connect.port), connect.host || "127.0.0.1");
      },
    }),
  );
}

module.exports = { activate, deactivate() {} };
