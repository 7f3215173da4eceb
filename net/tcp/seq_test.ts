import assert from "node:assert/strict";
import fc from "fast-check";
import { seqAdd, seqDiff, seqGe, seqGt, seqInWindow, seqLe, seqLt, seqMax, seqMin } from "./seq.ts";

Deno.test("seqAdd() wraps modulo 2^32 (RFC 9293 3.4: arithmetic modulo 2^32)", () => {
  assert.equal(seqAdd(0xffff_ffff, 1), 0);
  assert.equal(seqAdd(0xffff_fff0, 0x20), 0x10);
  assert.equal(seqAdd(5, -10), 0xffff_fffb);
});

Deno.test("seqLt() orders numbers across the wrap point (RFC 9293 3.4)", () => {
  assert.ok(seqLt(0xffff_fff0, 0x10));
  assert.ok(!seqLt(0x10, 0xffff_fff0));
  assert.ok(seqGt(0x10, 0xffff_fff0));
  assert.ok(seqLe(7, 7) && seqGe(7, 7) && !seqLt(7, 7) && !seqGt(7, 7));
  assert.equal(seqMax(0xffff_fff0, 3), 3);
  assert.equal(seqMin(0xffff_fff0, 3), 0xffff_fff0);
  assert.equal(seqDiff(3, 0xffff_fffe), 5);
});

Deno.test("seqInWindow() holds [start, start+len) even when the window wraps", () => {
  assert.ok(seqInWindow(0xffff_ffff, 0xffff_fff0, 0x20));
  assert.ok(seqInWindow(0x0f, 0xffff_fff0, 0x20));
  assert.ok(!seqInWindow(0x10, 0xffff_fff0, 0x20));
  assert.ok(!seqInWindow(5, 5, 0));
});

Deno.test("seq helpers agree with exact arithmetic for numbers less than 2^31 apart (property)", () => {
  fc.assert(
    fc.property(fc.nat(0xffff_ffff), fc.integer({ min: -(2 ** 31) + 1, max: 2 ** 31 - 1 }), (a, d) => {
      const b = seqAdd(a, d);
      assert.equal(seqDiff(b, a), d);
      assert.equal(seqLt(a, b), d > 0);
      assert.equal(seqGt(a, b), d < 0);
    }),
  );
});
