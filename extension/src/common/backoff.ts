/**
 * When to restart the sidecar after it exits: exponential backoff that resets once a run has
 * lasted long enough, and gives up after too many quick crashes in a row so a broken install
 * does not loop forever. Pure: the caller passes the clock.
 */

export interface BackoffOptions {
  /** First delay. */
  initialMs: number;
  /** Upper bound of a delay. */
  maxMs: number;
  /** A run lasting at least this long counts as healthy and resets the backoff. */
  healthyAfterMs: number;
  /** Consecutive quick crashes after which we stop restarting. */
  maxAttempts: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = {
  initialMs: 1_000,
  maxMs: 30_000,
  healthyAfterMs: 60_000,
  maxAttempts: 5,
};

export type RestartDecision =
  | { restart: true; delayMs: number; attempt: number }
  | { restart: false; attempts: number };

export class RestartPolicy {
  private attempts = 0;
  private startedAt: number | undefined;

  constructor(private readonly options: BackoffOptions = DEFAULT_BACKOFF) {}

  /** The sidecar (re)started at `now`. */
  started(now: number): void {
    this.startedAt = now;
  }

  /** The sidecar exited at `now`: restart it, and after how long? */
  exited(now: number): RestartDecision {
    const ranFor = this.startedAt === undefined ? 0 : now - this.startedAt;
    if (ranFor >= this.options.healthyAfterMs) {
      this.attempts = 0;
    }
    this.startedAt = undefined;
    if (this.attempts >= this.options.maxAttempts) {
      return { restart: false, attempts: this.attempts };
    }
    const delayMs = Math.min(this.options.initialMs * 2 ** this.attempts, this.options.maxMs);
    this.attempts += 1;
    return { restart: true, delayMs, attempt: this.attempts };
  }

  /** A manual restart starts the count afresh. */
  reset(): void {
    this.attempts = 0;
  }
}
