import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { IdleWarnings, idleAndCostLines, idleNotice, overBudget } from "../src/common/idle";
import type { CostStatus, IdleStatus } from "../src/protocol";

function idle(overrides: Partial<IdleStatus> = {}): IdleStatus {
  return {
    action: "warn",
    line: "idle 25 min · stops in 5 min",
    reason: "idle 25 min · stops in 5 min",
    idle_s: 1500,
    stops_in_s: 300,
    rule: "idle",
    stop_hook: "signal",
    agent_pid: 42,
    checked_s_ago: 1,
    stale: false,
    ...overrides,
  };
}

function cost(overrides: Partial<CostStatus> = {}): CostStatus {
  return { spend_today: 3.2, day_start: 0, daily_budget: null, over_budget: false, line: "$3.20 today", ...overrides };
}

describe("idle warning notification", () => {
  it("shows once per warning, with Keep running", () => {
    const warnings = new IdleWarnings();
    assert.equal(warnings.next("gpu", idle({ action: "keep", stops_in_s: null })), undefined);
    const first = warnings.next("gpu", idle());
    assert.ok(first?.canKeep);
    assert.match(first.message, /gpu is idle and stops in 5 min/);
    // the same warning, a minute later: not again
    assert.equal(warnings.next("gpu", idle({ stops_in_s: 240 })), undefined);
    // "Keep running" reset the timer (keep), then the next warning shows again
    assert.equal(warnings.next("gpu", idle({ action: "keep", stops_in_s: 1800 })), undefined);
    assert.ok(warnings.next("gpu", idle({ stops_in_s: 299 })));
  });

  it("waits until the stop is at most five minutes away", () => {
    const warnings = new IdleWarnings();
    assert.equal(warnings.next("gpu", idle({ stops_in_s: 301 })), undefined);
    assert.ok(warnings.next("gpu", idle({ stops_in_s: 300 })));
  });

  it("says nothing for a report-only machine, a silent agent, or no agent", () => {
    const warnings = new IdleWarnings();
    assert.equal(warnings.next("box", idle({ stop_hook: "report" })), undefined);
    assert.equal(warnings.next("gpu", idle({ stale: true })), undefined);
    assert.equal(warnings.next("gpu", null), undefined);
    assert.equal(warnings.next("gpu", undefined), undefined);
  });

  it("a ttl warning has no Keep running (it does not extend a lifetime) and is its own warning", () => {
    const warnings = new IdleWarnings();
    assert.ok(warnings.next("gpu", idle())?.canKeep);
    const ttl = warnings.next("gpu", idle({ rule: "ttl", line: "ttl 24 h ends in 4 min", stops_in_s: 240 }));
    assert.equal(ttl?.canKeep, false);
    assert.match(ttl.message, /lifetime \(ttl\) and stops in 4 min/);
  });

  it("rounds the minutes left, at least one", () => {
    assert.match(idleNotice("gpu", idle({ stops_in_s: 10 })).message, /in 1 min/);
  });
});

describe("idle and spend in the tooltip", () => {
  it("lists the idle line and the spend today", () => {
    assert.deepEqual(idleAndCostLines({ idle: idle(), cost: cost() }), [
      "Idle: idle 25 min · stops in 5 min",
      "Spend: $3.20 today",
    ]);
  });

  it("shows a budget even before anything was spent, and nothing without either", () => {
    const zero = cost({ spend_today: 0, daily_budget: 20, line: "$0.00 today of a $20.00 daily budget" });
    assert.deepEqual(idleAndCostLines({ idle: null, cost: zero }), ["Spend: $0.00 today of a $20.00 daily budget"]);
    assert.deepEqual(idleAndCostLines({ idle: null, cost: cost({ spend_today: 0 }) }), []);
    assert.deepEqual(idleAndCostLines(undefined), []);
  });

  it("flags a spent budget", () => {
    assert.equal(overBudget({ cost: cost({ over_budget: true }) }), true);
    assert.equal(overBudget({ cost: null }), false);
  });
});
