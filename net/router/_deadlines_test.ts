import assert from "node:assert/strict";
import fc from "fast-check";
import { Deadlines } from "./_deadlines.ts";

Deno.test("Deadlines pops items in deadline order, only once due", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 1000 }), { maxLength: 200 }), (ts) => {
      const d = new Deadlines<number>();
      ts.forEach((t, i) => d.push(t, i));
      assert.equal(d.popDue(-1), undefined);
      const out: number[] = [];
      for (let x = d.popDue(1000); x !== undefined; x = d.popDue(1000)) out.push(ts[x]!);
      assert.deepEqual(out, [...ts].sort((a, b) => a - b));
      assert.equal(d.peek(), Number.POSITIVE_INFINITY);
    }),
  );
});

Deno.test("Deadlines.peekItem() names the item with the earliest deadline", () => {
  const d = new Deadlines<string>();
  assert.equal(d.peekItem(), undefined);
  d.push(30, "c");
  d.push(10, "a");
  d.push(20, "b");
  assert.equal(d.peekItem(), "a");
  d.popDue(10);
  assert.equal(d.peekItem(), "b");
});
