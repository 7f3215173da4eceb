import assert from "node:assert/strict";
import { concat } from "./bytes.ts";

Deno.test("concat() joins arrays in order into a new one", () => {
  const a = Uint8Array.of(1, 2);
  const out = concat([a, new Uint8Array(0), Uint8Array.of(3)]);
  assert.deepEqual(out, Uint8Array.of(1, 2, 3));
  out[0] = 9;
  assert.equal(a[0], 1, "a copy, not a view");
  assert.deepEqual(concat([]), new Uint8Array(0));
});
