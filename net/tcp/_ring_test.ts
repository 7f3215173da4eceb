import assert from "node:assert/strict";
import { ByteRing } from "./_ring.ts";

function bytes(from: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (from + i) & 0xff;
  return b;
}

Deno.test("ByteRing.append() takes only what fits under the limit", () => {
  const r = new ByteRing(10, 4);
  assert.equal(r.append(bytes(0, 7)), 7);
  assert.equal(r.append(bytes(7, 7)), 3);
  assert.equal(r.free, 0);
  assert.deepEqual(r.slice(0, 10, () => new Uint8Array(10)), bytes(0, 10));
});

Deno.test("ByteRing keeps bytes in order across wrap-around and growth", () => {
  const r = new ByteRing(64, 8);
  let written = 0;
  let read = 0;
  for (let round = 0; round < 50; round++) {
    written += r.append(bytes(written, 5 + (round % 7)));
    const take = Math.min(r.length, 3 + (round % 5));
    const out = new Uint8Array(take);
    assert.equal(r.copyOut(out), take);
    assert.deepEqual(out, bytes(read, take));
    r.advance(take);
    read += take;
  }
});

Deno.test("ByteRing.writeAt() parks out-of-order bytes that extend() later exposes", () => {
  const r = new ByteRing(32, 4);
  r.writeAt(10, bytes(10, 6));
  r.writeAt(0, bytes(0, 10));
  r.extend(16);
  assert.deepEqual(r.slice(0, 16, () => new Uint8Array(16)), bytes(0, 16));
  assert.throws(() => r.writeAt(30, bytes(0, 3)), RangeError);
});

Deno.test("ByteRing.releaseIfEmpty() frees a small empty ring, keeps a held or grown one, and the ring works after", () => {
  const r = new ByteRing(1 << 20, 2048);
  r.append(bytes(0, 100));
  r.releaseIfEmpty(8192);
  assert.equal(r.capacity, 2048, "bytes are held: kept");
  r.advance(100);
  r.releaseIfEmpty(8192);
  assert.equal(r.capacity, 0);
  r.append(bytes(7, 10));
  assert.deepEqual(r.slice(0, 10, () => new Uint8Array(10)), bytes(7, 10));
  r.advance(10);
  r.append(bytes(0, 50_000));
  r.advance(50_000);
  r.releaseIfEmpty(8192);
  assert.ok(r.capacity >= 50_000, "a bulk flow's grown ring is kept");
});
