import assert from "node:assert/strict";
import {
  FAST_MAX_MS,
  GIVE_UP_AFTER_MS,
  ReconnectBackoff,
  RESUME_WINDOW_MS,
  SLOW_AFTER_MS,
  SLOW_MS,
} from "./backoff.ts";
import { ClockJumpDetector } from "./clock_jump.ts";

Deno.test("ReconnectBackoff retries every 250 ms while connections may resume, every second to a minute, then every 5 s, and gives up after 5 minutes", () => {
  const b = new ReconnectBackoff(1000);
  assert.deepEqual([b.next(1000), b.next(1100), b.next(1350)], [100, 250, 250]);
  assert.equal(b.next(1000 + RESUME_WINDOW_MS - 1), 250);
  assert.equal(b.next(1000 + RESUME_WINDOW_MS), FAST_MAX_MS);
  assert.equal(b.next(1000 + SLOW_AFTER_MS - 1), FAST_MAX_MS);
  assert.equal(b.next(1000 + SLOW_AFTER_MS), SLOW_MS);
  assert.equal(b.next(1000 + GIVE_UP_AFTER_MS), null);
  assert.equal(b.attempts, 7);
});

Deno.test("ClockJumpDetector reports the wall clock running ahead of the monotonic clock (sleep), not timer lateness or a step back", () => {
  const d = new ClockJumpDetector(1_000_000, 50);
  assert.equal(d.check(1_001_000, 1_050), 0, "both moved 1 s");
  assert.equal(d.check(1_003_500, 2_100), 0, "1.45 s late: under the threshold");
  assert.equal(d.check(1_063_500, 3_100), 59_000, "the wall clock moved 60 s, the monotonic 1 s: slept");
  assert.equal(d.check(1_000_000, 4_100), 0, "set back: not sleep");
  assert.equal(d.check(1_001_000, 5_100), 0, "measured from the last check");
});
