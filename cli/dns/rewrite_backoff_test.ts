import assert from "node:assert/strict";
import { RewriteBackoff } from "./rewrite_backoff.ts";

Deno.test("RewriteBackoff re-applies after a rewrite once in a while, however long it runs", () => {
  const b = new RewriteBackoff();
  for (let t = 0; t < 10 * 60_000; t += 2_500) assert.deepEqual(b.rewritten(t), { action: "reapply" });
  assert.equal(b.backOffs, 0);
});

Deno.test("RewriteBackoff backs off after 5 re-applies within 10 s, and waits until the back-off ends", () => {
  const b = new RewriteBackoff();
  for (let i = 0; i < 5; i++) assert.deepEqual(b.rewritten(i * 100), { action: "reapply" });
  assert.deepEqual(b.rewritten(500), { action: "back-off", untilMs: 30_500, reapplies: 5, windowMs: 10_000 });
  assert.equal(b.backingOffUntil(600), 30_500);
  for (let t = 600; t < 30_500; t += 100) assert.deepEqual(b.rewritten(t), { action: "wait", untilMs: 30_500 });
  assert.equal(b.backingOffUntil(30_500), null);
  assert.deepEqual(b.rewritten(30_500), { action: "reapply" }, "one more look once it ends");
  assert.equal(b.backOffs, 1);
});

Deno.test("RewriteBackoff doubles a back-off in a row up to the longest, and starts over after a calm spell", () => {
  const b = new RewriteBackoff({ maxReapplies: 1, windowMs: 1_000, backoffMs: 100, maxBackoffMs: 350 });
  let t = 0;
  const lengths: number[] = [];
  for (let i = 0; i < 4; i++) {
    assert.equal(b.rewritten(t).action, "reapply");
    const d = b.rewritten(t + 1);
    assert.equal(d.action, "back-off");
    if (d.action === "back-off") lengths.push(d.untilMs - (t + 1)), t = d.untilMs;
  }
  assert.deepEqual(lengths, [100, 200, 350, 350]);
  t += 350; // calm
  assert.equal(b.rewritten(t).action, "reapply");
  const d = b.rewritten(t + 1);
  assert.equal(d.action === "back-off" && d.untilMs - (t + 1), 100);
});

Deno.test("RewriteBackoff forgets re-applies older than the window", () => {
  const b = new RewriteBackoff({ maxReapplies: 2, windowMs: 1_000 });
  assert.equal(b.rewritten(0).action, "reapply");
  assert.equal(b.rewritten(500).action, "reapply");
  assert.equal(b.rewritten(1_200).action, "reapply", "the one at 0 is out of the window");
  assert.equal(b.rewritten(1_300).action, "back-off");
});
