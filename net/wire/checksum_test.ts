import assert from "node:assert/strict";
import fc from "fast-check";
import {
  checksum,
  foldSum,
  pseudoHeaderSumV4,
  pseudoHeaderSumV6,
  sumWords,
  updateChecksum,
  updateChecksum32,
  verifyChecksum,
} from "./checksum.ts";
import { at } from "./testdata/hex.ts";
import { tcp4 } from "./testdata/captured.ts";

Deno.test("sumWords() matches the worked example of RFC 1071 section 3", () => {
  const b = Uint8Array.of(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7);
  assert.equal(foldSum(sumWords(b, 0, b.length)), 0xddf2);
  assert.equal(checksum(b), 0x220d);
});

Deno.test("sumWords() pads an odd last byte with zero", () => {
  assert.equal(sumWords(Uint8Array.of(0x12, 0x34, 0x56), 0, 3), 0x1234 + 0x5600);
  assert.equal(sumWords(Uint8Array.of(0xab), 0, 1), 0xab00);
});

Deno.test("sumWords() agrees with a word-by-word sum on any bytes and any range", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), (b, x, y) => {
    const start = b.length === 0 ? 0 : x % b.length;
    const end = start + (b.length === 0 ? 0 : y % (b.length - start + 1));
    let expected = 0;
    for (let i = start; i < end; i += 2) expected += (b[i]! << 8) | (i + 1 < end ? b[i + 1]! : 0);
    assert.equal(sumWords(b, start, end), expected);
  }));
});

Deno.test("verifyChecksum() accepts a captured IPv4 header and rejects it with one bit flipped", () => {
  const p = at(tcp4, 0);
  assert.ok(verifyChecksum(p, 0, 20));
  p[8]! ^= 1;
  assert.ok(!verifyChecksum(p, 0, 20));
});

Deno.test("foldSum() folds sums beyond 32 bits exactly", () => {
  assert.equal(foldSum(0x1_0000_0000), 1);
  assert.equal(foldSum(0xffff * 70000), 0xffff); // a multiple of 0xffff is one's complement -0
});

Deno.test("updateChecksum() equals a full recomputation after a 16-bit word changes (RFC 1624)", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 2, maxLength: 64 }),
      fc.nat(),
      fc.integer({ min: 0, max: 0xffff }),
      (b, at, v) => {
        const even = b.length & ~1;
        const i = (at % (even / 2)) * 2;
        const before = checksum(b);
        const old = (b[i]! << 8) | b[i + 1]!;
        b[i] = v >> 8;
        b[i + 1] = v & 0xff;
        const after = checksum(b);
        // RFC 1624 section 5: 0x0000 and 0xffff are the same one's complement value; only -0 may differ.
        const inc = updateChecksum(before, old, v);
        assert.ok(inc === after || (inc ^ after) === 0xffff && (inc === 0 || after === 0));
      },
    ),
  );
});

Deno.test("updateChecksum32() follows an IPv4 address rewrite in a captured header", () => {
  const p = at(tcp4, 0);
  const old = ((p[16]! << 24) | (p[17]! << 16) | (p[18]! << 8) | p[19]!) >>> 0;
  const before = (p[10]! << 8) | p[11]!;
  p.set([10, 1, 2, 3], 16);
  p[10] = 0;
  p[11] = 0;
  assert.equal(updateChecksum32(before, old, 0x0a010203), checksum(p, 0, 20));
});

Deno.test("pseudoHeaderSumV4() and pseudoHeaderSumV6() sum the words of the RFC pseudo-headers", () => {
  assert.equal(pseudoHeaderSumV4(0xc6120001, 0xc6120002, 6, 40), 0xc612 + 1 + 0xc612 + 2 + 6 + 40);
  const a = new Uint8Array(16), b = new Uint8Array(16);
  a[15] = 1;
  b[0] = 0x20;
  assert.equal(pseudoHeaderSumV6(a, b, 17, 0x1_0002), 1 + 0x2000 + 17 + 1 + 2);
});
