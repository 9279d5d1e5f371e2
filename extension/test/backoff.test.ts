import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RestartPolicy } from "../src/common/backoff";

const options = { initialMs: 1000, maxMs: 5000, healthyAfterMs: 60_000, maxAttempts: 4 };

describe("restart backoff", () => {
  it("doubles the delay after each quick crash, up to the cap, then gives up", () => {
    const policy = new RestartPolicy(options);
    const delays: unknown[] = [];
    let now = 0;
    for (let i = 0; i < 5; i++) {
      policy.started(now);
      now += 100;
      const d = policy.exited(now);
      delays.push(d.restart ? d.delayMs : "give up");
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 5000, "give up"]);
  });

  it("resets after a run that lasted long enough", () => {
    const policy = new RestartPolicy(options);
    policy.started(0);
    policy.exited(10);
    policy.started(20);
    assert.deepEqual(policy.exited(30), { restart: true, delayMs: 2000, attempt: 2 });
    policy.started(100);
    assert.deepEqual(policy.exited(100 + 60_000), { restart: true, delayMs: 1000, attempt: 1 });
  });

  it("starts afresh after a manual restart", () => {
    const policy = new RestartPolicy(options);
    for (let i = 0; i < 4; i++) {
      policy.started(0);
      policy.exited(1);
    }
    assert.equal(policy.exited(2).restart, false);
    policy.reset();
    assert.deepEqual(policy.exited(3), { restart: true, delayMs: 1000, attempt: 1 });
  });
});
