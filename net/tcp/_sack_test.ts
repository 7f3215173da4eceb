import assert from "node:assert/strict";
import { MAX_SACK_RANGES, SackScoreboard } from "./_sack.ts";

Deno.test("SackScoreboard keeps at most maxRanges ranges and still merges blocks that touch one", () => {
  const b = new SackScoreboard(3);
  assert.equal(b.add(100, 200), true);
  assert.equal(b.add(300, 400), true);
  assert.equal(b.add(500, 600), true);
  assert.equal(b.add(700, 800), false, "a fourth disjoint range is refused");
  assert.equal(b.add(50, 60), false, "below the others too");
  assert.equal(b.size, 3);
  assert.equal(b.bytes(), 300);
  assert.equal(b.add(200, 300), true, "a block joining two ranges is recorded");
  assert.equal(b.size, 2);
  assert.equal(b.add(600, 650), true, "a block extending a range is recorded");
  assert.equal(b.add(700, 800), true, "with room again, a new range is recorded");
  assert.deepEqual([b.size, b.bytes(), b.highest(0)], [3, 550, 800]);
});

Deno.test("SackScoreboard's default bound is 32 ranges", () => {
  const b = new SackScoreboard();
  let recorded = 0;
  for (let i = 0; i < 100; i++) if (b.add(i * 10, i * 10 + 5)) recorded++;
  assert.equal(MAX_SACK_RANGES, 32);
  assert.equal(recorded, 32);
  assert.equal(b.size, 32);
});
