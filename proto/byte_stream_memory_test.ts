import assert from "node:assert/strict";
import { type ByteStream, ByteStreamResetError } from "./byte_stream.ts";
import { memoryByteStreamPair } from "./byte_stream_memory.ts";
import type { Tunnel } from "./tunnel.ts";

async function readAll(s: { read(): Promise<Uint8Array | null> }): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (let c = await s.read(); c; c = await s.read()) parts.push(c);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) (out.set(p, o), o += p.length);
  return out;
}

Deno.test("memoryByteStreamPair() carries bytes both ways, then each side's half-close as null", async () => {
  const [a, b] = memoryByteStreamPair();
  a.write(new TextEncoder().encode("ping"));
  a.closeWrite();
  b.write(new TextEncoder().encode("pong"));
  b.closeWrite();
  assert.equal(new TextDecoder().decode(await readAll(b)), "ping");
  assert.equal(new TextDecoder().decode(await readAll(a)), "pong");
  assert.equal(await b.read(), null, "the end is seen again by a later read");
});

Deno.test("memoryByteStreamPair() keeps no reference to a written buffer", async () => {
  const [a, b] = memoryByteStreamPair();
  const buf = new Uint8Array([1, 2, 3]);
  a.write(buf);
  buf.fill(9);
  assert.deepEqual([...(await b.read())!], [1, 2, 3]);
});

Deno.test("memoryByteStreamPair() asks the writer to wait above the high-water mark until the reader reads", async () => {
  const [a, b] = memoryByteStreamPair({ highWater: 10 });
  assert.equal(a.write(new Uint8Array(6)), true);
  assert.equal(a.write(new Uint8Array(6)), false);
  let drained = false;
  const d = a.drained().then(() => (drained = true));
  await Promise.resolve();
  assert.equal(drained, false);
  await b.read();
  await d;
  assert.equal(drained, true);
});

Deno.test("memoryByteStreamPair() with pieces and delays delivers the same bytes in order", async () => {
  const [a, b] = memoryByteStreamPair({ maxPiece: 7, seed: 42, delay: () => new Promise((r) => setTimeout(r, 0)) });
  const data = new Uint8Array(1000).map((_, i) => i & 0xff);
  a.write(data.subarray(0, 500));
  a.write(data.subarray(500));
  a.closeWrite();
  const sizes: number[] = [];
  const parts: number[] = [];
  for (let c = await b.read(); c; c = await b.read()) (sizes.push(c.length), parts.push(...c));
  assert.deepEqual(parts, [...data]);
  assert.ok(sizes.every((n) => n >= 1 && n <= 7) && sizes.length >= 1000 / 7);
});

Deno.test("memoryByteStreamPair() reset fails reads on both ends, drops what was queued and wakes a waiting writer", async () => {
  const [a, b] = memoryByteStreamPair({ highWater: 4 });
  a.write(new Uint8Array(8));
  const waiting = a.drained();
  const blockedRead = a.read();
  b.reset("gone");
  await waiting;
  await assert.rejects(blockedRead, ByteStreamResetError);
  await assert.rejects(b.read(), /gone/);
  assert.throws(() => a.write(new Uint8Array(1)), TypeError);
});

Deno.test("a Tunnel is a ByteStream (checked by the compiler)", () => {
  const asByteStream = (t: Tunnel): ByteStream => t;
  assert.equal(typeof asByteStream, "function");
});
