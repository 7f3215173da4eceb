/**
 * Property tests: a Connection fed arbitrary and mutated frames, on either end (issue 14). Whatever arrives, in
 * whatever pieces, `receive()` returns; the connection ends, if it does, with a GOAWAY naming the peer's error,
 * never INTERNAL_ERROR (which only an exception of our own would cause: a broken invariant, an illegal state
 * transition); callbacks see no surprises; and what it holds stays within its bounds.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { Connection, type Stream, type Transport } from "./connection.ts";
import {
  ErrorCode,
  errorName,
  Flag,
  frame,
  FrameType,
  goawayFrame,
  HEADER_LENGTH,
  pingFrame,
  PREFACE,
  rstStreamFrame,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from "./frame.ts";
import { HpackEncoder } from "./hpack.ts";
import { MAX_HEADER_BLOCK } from "./header_block.ts";
import { CLOSED_KEPT } from "./stream_state.ts";
import { concat } from "../../base/bytes.ts";

/** Test double: counts what the connection wrote and whether it closed; the peer takes everything at once. */
class NullTransport implements Transport {
  readonly buffered = 0;
  written = 0;
  closed = false;
  write(bytes: Uint8Array): void {
    this.written += bytes.length;
  }
  close(): void {
    this.closed = true;
  }
}

const MAX_FRAME = 16_384;
const MAX_STREAMS = 8;
const RUNS = Number(Deno.env.get("TP_FUZZ_RUNS") ?? 1500);

/** A server that answers each request, echoing its body, so streams go through every state. */
function server() {
  const t = new NullTransport();
  const errors: unknown[] = [];
  const c = new Connection("server", t, {
    maxFrameSize: MAX_FRAME,
    maxConcurrentStreams: MAX_STREAMS,
    streamWindow: 65_535,
    onHandlerError: (e) => errors.push(e),
    onStream: (s: Stream) => {
      s.respond([[":status", "200"]]);
      s.onData = (d) => s.write(d);
      s.onEnd = () => s.end([["grpc-status", "0"]]);
    },
  });
  return { c, t, errors };
}

function client() {
  const t = new NullTransport();
  const errors: unknown[] = [];
  const c = new Connection("client", t, { maxFrameSize: MAX_FRAME, onHandlerError: (e) => errors.push(e) });
  const streams: Stream[] = [];
  for (let i = 0; i < 3; i++) {
    const s = c.request([[":method", "POST"], [":scheme", "http"], [":path", "/x"], [":authority", "tp"]]);
    s.onData = () => {};
    s.write(new Uint8Array(100));
    streams.push(s);
  }
  return { c, t, errors, streams };
}

/** What every run checks after each piece of input. */
function checkBounds(c: Connection, errors: unknown[]): void {
  assert.deepEqual(errors, [], "no callback threw");
  assert.ok(c.inputBuffered <= HEADER_LENGTH + MAX_FRAME + MAX_HEADER_BLOCK, `held ${c.inputBuffered} bytes`);
  assert.ok(c.streamCount <= MAX_STREAMS + 3, `${c.streamCount} streams`);
  const e = c.error;
  // INTERNAL_ERROR of our own means an exception escaped a frame handler; the peer's GOAWAY may carry any code.
  if (e && !e.message.startsWith("GOAWAY from the peer")) {
    assert.notEqual(e.code, ErrorCode.INTERNAL_ERROR, `ended with INTERNAL_ERROR: ${e.message}`);
  }
}

/** Feeds `bytes` in pieces cut at `cuts` (fractions of the length). */
async function feed(c: Connection, errors: unknown[], bytes: Uint8Array, cuts: number[]): Promise<void> {
  const at = [...new Set(cuts.map((x) => Math.floor(x * bytes.length)))].sort((a, b) => a - b);
  let prev = 0;
  for (const i of [...at, bytes.length]) {
    c.receive(bytes.slice(prev, i));
    prev = i;
    checkBounds(c, errors);
  }
  await Promise.resolve(); // the flush the input scheduled
  checkBounds(c, errors);
}

const enc = new HpackEncoder();
const REQUEST = enc.encode([[":method", "POST"], [":scheme", "http"], [":path", "/"], [":authority", "tp"]]);
const RESPONSE = enc.encode([[":status", "200"], ["content-type", "application/grpc-web+proto"]]);
const TRAILERS = enc.encode([["grpc-status", "0"]]);

const streamId = fc.oneof(fc.constantFrom(0, 1, 2, 3, 5, 7, 9), fc.nat(0x7fffffff));
const flags = fc.oneof(
  fc.constantFrom(0, Flag.END_STREAM, Flag.END_HEADERS, Flag.END_STREAM | Flag.END_HEADERS, Flag.PADDED),
  fc.nat(0xff),
);
const smallBytes = fc.uint8Array({ maxLength: 64 });

/** One plausible frame: every type, sensible payloads mostly, sometimes wrong ones. */
function frameArb(block: Uint8Array): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.tuple(streamId, flags).map(([id, f]) => frame(FrameType.HEADERS, f | Flag.END_HEADERS, id, block)),
    fc.tuple(streamId, flags).map(([id, f]) => frame(FrameType.HEADERS, f | Flag.END_HEADERS, id, TRAILERS)),
    fc.tuple(streamId, flags, smallBytes).map(([id, f, p]) => frame(FrameType.HEADERS, f, id, p)),
    fc.tuple(streamId, flags, fc.uint8Array({ maxLength: 2000 })).map(([id, f, p]) => frame(FrameType.DATA, f, id, p)),
    fc.tuple(streamId, flags, smallBytes).map(([id, f, p]) => frame(FrameType.CONTINUATION, f, id, p)),
    fc.tuple(streamId, fc.nat(0x7fffffff)).map(([id, inc]) => windowUpdateFrame(id, inc)),
    fc.tuple(streamId, fc.nat(20)).map(([id, code]) => rstStreamFrame(id, code)),
    fc.tuple(streamId, smallBytes).map(([id, p]) => frame(FrameType.PRIORITY, 0, id, p)),
    fc.array(fc.tuple(fc.nat(8), fc.nat(0xffffffff)), { maxLength: 6 }).map((s) => settingsFrame(s)),
    fc.constant(frame(FrameType.SETTINGS, Flag.ACK, 0)),
    fc.tuple(fc.uint8Array({ minLength: 8, maxLength: 8 }), fc.boolean()).map(([d, ack]) => pingFrame(d, ack)),
    fc.tuple(fc.nat(0x7fffffff), fc.nat(20)).map(([last, code]) => goawayFrame(last, code)),
    fc.tuple(fc.nat(0xff), flags, streamId, smallBytes).map(([type, f, id, p]) => frame(type, f, id, p)),
  );
}

/** A byte-level mutation of a whole input: a flipped byte, a cut, a repeat, inserted junk. */
const mutation = fc.oneof(
  fc.tuple(fc.constant("flip" as const), fc.double({ min: 0, max: 1, maxExcluded: true }), fc.nat(0xff)),
  fc.tuple(fc.constant("cut" as const), fc.double({ min: 0, max: 1, maxExcluded: true }), fc.nat(0)),
  fc.tuple(fc.constant("insert" as const), fc.double({ min: 0, max: 1, maxExcluded: true }), fc.nat(0xff)),
);

function mutate(b: Uint8Array, ms: [string, number, number][]): Uint8Array {
  let out = b;
  for (const [kind, where, v] of ms) {
    const i = Math.floor(where * out.length);
    if (kind === "flip") {
      out = out.slice();
      out[i] = (out[i] ?? 0) ^ (v || 1);
    } else if (kind === "cut") out = out.slice(0, i);
    else out = concat([out.subarray(0, i), new Uint8Array([v]), out.subarray(i)]);
  }
  return out;
}

const cuts = fc.array(fc.double({ min: 0, max: 1, maxExcluded: true }), { maxLength: 6 });
const OPENING = concat([PREFACE, settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 65_535]])]);

Deno.test("a server Connection fed arbitrary bytes after the preface stays within its bounds and never fails inside", async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 4000 }), cuts, async (junk, at) => {
      const { c, errors } = server();
      await feed(c, errors, concat([OPENING, junk]), at);
      c.destroy();
    }),
    { numRuns: RUNS },
  );
});

Deno.test("a server Connection fed sequences of plausible frames, mutated and cut anywhere, never fails inside", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(frameArb(REQUEST), { maxLength: 30 }),
      fc.array(mutation, { maxLength: 3 }),
      cuts,
      async (frames, ms, at) => {
        const { c, errors } = server();
        await feed(c, errors, mutate(concat([OPENING, ...frames]), ms), at);
        c.destroy();
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("a client Connection fed plausible server frames, mutated and cut anywhere, never fails inside", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(frameArb(RESPONSE), { maxLength: 30 }),
      fc.array(mutation, { maxLength: 3 }),
      cuts,
      async (frames, ms, at) => {
        const { c, errors } = client();
        await feed(c, errors, mutate(concat([settingsFrame([]), ...frames]), ms), at);
        c.destroy();
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("a server Connection remembers at most CLOSED_KEPT closed streams however many the peer opens and resets", () => {
  const { c, errors } = server();
  const parts: Uint8Array[] = [OPENING];
  for (let id = 1; id < 2 * (CLOSED_KEPT + 200); id += 2) {
    parts.push(frame(FrameType.HEADERS, Flag.END_HEADERS, id, REQUEST), rstStreamFrame(id, ErrorCode.CANCEL));
  }
  c.receive(concat(parts));
  checkBounds(c, errors);
  assert.equal(c.streamCount, 0);
  assert.equal(c.usable, false, `rapid reset ends it: ${errorName(c.error?.code ?? -1)}`);
});
