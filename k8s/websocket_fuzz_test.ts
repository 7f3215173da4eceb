/**
 * Property tests: the WebSocket frame decoder (what the API server's port-forward sends) fed arbitrary and
 * well-formed-then-mutated frames, in any pieces (issue 14): only its documented RangeError escapes, and it never
 * holds more than one frame in progress plus one message's fragments.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import { FrameDecoder } from "./websocket.ts";

const RUNS = Number(Deno.env.get("TP_FUZZ_RUNS") ?? 1500);
const MAX = 1000;
/** A frame in progress (header of at most 14 bytes and a payload of at most MAX) plus a message's fragments. */
const BOUND = 14 + MAX + MAX;

/** A server frame (unmasked unless asked): FIN, opcode, a length in any of the three encodings. */
function serverFrame(fin: boolean, opcode: number, payload: Uint8Array, wide: number): Uint8Array {
  const n = payload.length;
  const head = wide === 2 || n > 0xffff ? 10 : wide === 1 || n > 125 ? 4 : 2;
  const out = new Uint8Array(head + n);
  out[0] = (fin ? 0x80 : 0) | opcode;
  if (head === 2) out[1] = n;
  else if (head === 4) {
    out[1] = 126;
    new DataView(out.buffer).setUint16(2, n);
  } else {
    out[1] = 127;
    new DataView(out.buffer).setUint32(6, n);
  }
  out.set(payload, head);
  return out;
}

const frameArb = fc.tuple(
  fc.boolean(),
  fc.constantFrom(0x0, 0x1, 0x2, 0x8, 0x9, 0xa, 0x3, 0xf),
  fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ minLength: MAX / 2, maxLength: MAX })),
  fc.nat(2),
).map(([fin, op, p, wide]) => serverFrame(fin, op, p, wide));

/** Pushes `bytes` in pieces; only RangeError may escape, after which the decoder is dropped (as portforward does). */
function feed(bytes: Uint8Array, cuts: number[]): void {
  const d = new FrameDecoder(MAX);
  const at = [...new Set(cuts.map((x) => Math.floor(x * bytes.length)))].sort((a, b) => a - b);
  let prev = 0;
  for (const i of [...at, bytes.length]) {
    try {
      for (const f of d.push(Buffer.from(bytes.subarray(prev, i)))) assert.ok(f.payload.length <= MAX);
    } catch (e) {
      if (e instanceof RangeError) return;
      throw e;
    }
    prev = i;
    assert.ok(d.buffered <= BOUND, `${d.buffered} bytes held`);
  }
}

const cuts = fc.array(fc.double({ min: 0, max: 1, maxExcluded: true }), { maxLength: 8 });

Deno.test("FrameDecoder fed arbitrary bytes throws nothing but RangeError and holds at most one frame and one message", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 5000 }), cuts, feed), { numRuns: RUNS });
});

Deno.test("FrameDecoder fed server frames, mutated and cut anywhere, stays within one frame and one message", () => {
  fc.assert(
    fc.property(
      fc.array(frameArb, { maxLength: 40 }),
      fc.array(fc.tuple(fc.double({ min: 0, max: 1, maxExcluded: true }), fc.nat(0xff)), { maxLength: 3 }),
      cuts,
      (frames, flips, at) => {
        const bytes = Buffer.concat(frames);
        for (const [where, v] of flips) {
          const i = Math.floor(where * bytes.length);
          if (i < bytes.length) bytes[i] = bytes[i]! ^ (v || 1);
        }
        feed(bytes, at);
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("FrameDecoder refuses a fragmented message over maxMessage though each fragment is under it (found by fuzzing)", () => {
  const d = new FrameDecoder(MAX);
  const half = new Uint8Array(MAX / 2);
  assert.deepEqual(d.push(Buffer.from(serverFrame(false, 0x2, half, 1))), []);
  assert.deepEqual(d.push(Buffer.from(serverFrame(false, 0x0, half, 1))), []);
  assert.equal(d.buffered, MAX);
  assert.throws(() => d.push(Buffer.from(serverFrame(true, 0x0, Uint8Array.of(0), 0))), RangeError);
});
