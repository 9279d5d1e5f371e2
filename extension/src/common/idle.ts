/**
 * The idle agent's warning and the cost guard, as the extension shows them: which status
 * change deserves a "Keep running" notification (once per warning), and the tooltip lines
 * for the idle state and the spend today. Pure functions of the protocol types.
 */

import type { CostStatus, IdleStatus, OrchStatus } from "../protocol";

/** Warn from this many seconds before the stop (the agent warns from five minutes). */
export const WARN_WITHIN_S = 300;

export interface IdleNotice {
  message: string;
  /** Offer "Keep running" (it resets the idle timer; it does not extend a TTL). */
  canKeep: boolean;
}

/**
 * Decides, status by status, when to show the idle warning: once when a warning begins
 * (the agent's action turns to "warn" with the stop at most WARN_WITHIN_S away), not again
 * for the same warning, and again for the next one (after "Keep running" reset the timer,
 * or the rule changed from idle to ttl).
 */
export class IdleWarnings {
  private shown: string | undefined;

  next(machine: string, idle: IdleStatus | null | undefined): IdleNotice | undefined {
    // A report-only machine (kind ssh) never stops: its "would stop" is no reason to interrupt.
    if (
      !idle ||
      idle.stale ||
      idle.action !== "warn" ||
      idle.stop_hook === "report" ||
      idle.stops_in_s === null ||
      idle.stops_in_s > WARN_WITHIN_S
    ) {
      if (!idle || idle.action !== "warn") {
        this.shown = undefined; // the warning is over: the next one is shown again
      }
      return undefined;
    }
    const key = `${machine}:${idle.rule}`;
    if (this.shown === key) {
      return undefined;
    }
    this.shown = key;
    return idleNotice(machine, idle);
  }
}

export function idleNotice(machine: string, idle: IdleStatus): IdleNotice {
  const inMin = Math.max(1, Math.round((idle.stops_in_s ?? 0) / 60));
  const when = `in ${inMin} min`;
  if (idle.rule === "ttl") {
    return {
      message: `Orch: ${machine} reaches the end of its lifetime (ttl) and stops ${when}. ${idle.line}`,
      canKeep: false,
    };
  }
  return {
    message: `Orch: ${machine} is idle and stops ${when} (${idle.line}). Keep it running?`,
    canKeep: true,
  };
}

/** Tooltip lines for the idle agent and the spend today (empty when neither applies). */
export function idleAndCostLines(status: Pick<OrchStatus, "idle" | "cost"> | undefined): string[] {
  const lines: string[] = [];
  if (status?.idle) {
    lines.push(`Idle: ${status.idle.line}`);
  }
  const cost: CostStatus | null | undefined = status?.cost;
  if (cost && (cost.spend_today > 0 || cost.daily_budget !== null)) {
    lines.push(`Spend: ${cost.line}`);
  }
  return lines;
}

/** Whether the machine item should be drawn as a warning (the daily budget is spent). */
export function overBudget(status: Pick<OrchStatus, "cost"> | undefined): boolean {
  return Boolean(status?.cost?.over_budget);
}
