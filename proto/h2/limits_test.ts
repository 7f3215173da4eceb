import assert from "node:assert/strict";
import { Connection, type ConnectionOptions, type Transport } from "./connection.ts";
import {
  ErrorCode,
  errorName,
  Flag,
  frame,
  FrameType,
  HEADER_LENGTH,
  parseHeader,
  pingFrame,
  PREFACE,
  readU32,
  rstStreamFrame,
  settingsFrame,
} from "./frame.ts";
import { HpackEncoder } from "./hpack.ts";
import { InputBuffer } from "./input_buffer.ts";
import { TokenBucket } from "./limits.ts";
import { concat } from "../../base/bytes.ts";

/** Test double: keeps what the connection wrote as frames; `buffered` is what the test says the peer left unread. */
class StuckTransport implements Transport {
  buffered = 0;
  closed = false;
  readonly frames: { type: number; flags: number; streamId: number; payload: Uint8Array }[] = [];
  #rest: Uint8Array = new Uint8Array(0);
  /** Bytes written pile up in `buffered` (a peer that never reads) when true. */
  constructor(readonly stuck = false) {}

  write(bytes: Uint8Array): void {
    if (this.stuck) this.buffered += bytes.length;
    let b = concat([this.#rest, bytes]);
    while (b.length >= HEADER_LENGTH) {
      const h = parseHeader(b);
      if (b.length < HEADER_LENGTH + h.length) break;
      this.frames.push({ ...h, payload: b.slice(HEADER_LENGTH, HEADER_LENGTH + h.length) });
      b = b.subarray(HEADER_LENGTH + h.length);
    }
    this.#rest = b.slice();
  }

  close(): void {
    this.closed = true;
  }

  goawayCode(): string | undefined {
    const g = this.frames.findLast((f) => f.type === FrameType.GOAWAY);
    return g && errorName(readU32(g.payload, 4));
  }

  resets(id: number): string[] {
    return this.frames.filter((f) => f.type === FrameType.RST_STREAM && f.streamId === id).map((f) =>
      errorName(readU32(f.payload, 0))
    );
  }
}

const OPENING = concat([PREFACE, settingsFrame([]), frame(FrameType.SETTINGS, Flag.ACK, 0)]);
const BLOCK = new HpackEncoder().encode([[":method", "POST"], [":scheme", "http"], [":path", "/"]]);
const headers = (id: number, endStream = false) =>
  frame(FrameType.HEADERS, Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0), id, BLOCK);
const tick = () => new Promise<void>((r) => setTimeout(r, 0));

function server(options: ConnectionOptions = {}, stuck = false) {
  const t = new StuckTransport(stuck);
  const c = new Connection("server", t, options);
  c.receive(OPENING);
  return { c, t };
}

Deno.test("TokenBucket gives its burst at once, then its rate", () => {
  let now = 0;
  const b = new TokenBucket(3, 2, () => now);
  assert.deepEqual([b.take(), b.take(), b.take(), b.take()], [true, true, true, false]);
  now += 500; // one token back at 2 a second
  assert.deepEqual([b.take(), b.take()], [true, false]);
  now += 60_000; // never more than the burst
  assert.deepEqual([b.take(), b.take(), b.take(), b.take()], [true, true, true, false]);
});

Deno.test("rapid reset: the burst of resets is taken, then the rate, then GOAWAY ENHANCE_YOUR_CALM", async () => {
  let now = 0;
  const { c, t } = server({ now: () => now, limits: { resetBurst: 10, resetRate: 2 } });
  const pair = (id: number) => concat([headers(id), rstStreamFrame(id, ErrorCode.CANCEL)]);
  for (let id = 1; id <= 19; id += 2) c.receive(pair(id)); // 10: the burst
  assert.equal(c.usable, true);
  now += 1000; // two more a second later
  c.receive(concat([pair(21), pair(23)]));
  assert.equal(c.usable, true);
  assert.equal(c.counters.peerResets, 12);
  c.receive(pair(25));
  await tick();
  assert.equal(t.goawayCode(), "ENHANCE_YOUR_CALM");
  assert.equal(t.closed, true);
});

Deno.test("streams refused over MAX_CONCURRENT_STREAMS count as resets", async () => {
  const { c, t } = server({ maxConcurrentStreams: 1, limits: { resetBurst: 3, resetRate: 0 } });
  c.receive(headers(1));
  for (let id = 3; id <= 7; id += 2) c.receive(headers(id));
  await tick();
  assert.equal(c.counters.refusedStreams, 3);
  assert.deepEqual(t.resets(3), ["REFUSED_STREAM"]);
  c.receive(headers(9));
  await tick();
  assert.equal(t.goawayCode(), "ENHANCE_YOUR_CALM");
});

Deno.test("a 9th CONTINUATION of one header block gets GOAWAY ENHANCE_YOUR_CALM, 8 are fine", async () => {
  const ok = server();
  const parts = [frame(FrameType.HEADERS, 0, 1, BLOCK.subarray(0, 1))];
  for (let i = 0; i < 7; i++) parts.push(frame(FrameType.CONTINUATION, 0, 1));
  parts.push(frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, BLOCK.subarray(1)));
  let seen = 0;
  const okConn = new Connection("server", new StuckTransport(), { onStream: () => seen++ });
  okConn.receive(concat([OPENING, ...parts]));
  assert.equal(seen, 1);
  okConn.destroy();
  ok.c.destroy();
  const { c, t } = server();
  c.receive(frame(FrameType.HEADERS, 0, 1, BLOCK));
  for (let i = 0; i < 9; i++) c.receive(frame(FrameType.CONTINUATION, 0, 1));
  await tick();
  assert.equal(t.goawayCode(), "ENHANCE_YOUR_CALM");
});

Deno.test("SETTINGS of 33 entries gets GOAWAY ENHANCE_YOUR_CALM; 32 are applied, the window once", async () => {
  const { c, t } = server();
  c.receive(headers(1));
  const entries: [number, number][] = Array.from({ length: 32 }, (_, i) => [0x4, 1000 + i]);
  c.receive(settingsFrame(entries));
  assert.equal(c.usable, true);
  c.receive(settingsFrame([...entries, [0x4, 5]]));
  await tick();
  assert.equal(t.goawayCode(), "ENHANCE_YOUR_CALM");
});

Deno.test("a 128 KiB frame fed one byte at a time is reassembled with copying linear in its size", () => {
  let got = 0;
  const t = new StuckTransport();
  const c = new Connection("server", t, {
    onStream: (s) => (s.onData = (d) => (got += d.length)),
  });
  const bytes = concat([OPENING, headers(1), frame(FrameType.DATA, 0, 1, new Uint8Array(128 * 1024))]);
  for (let i = 0; i < bytes.length; i++) c.receive(bytes.subarray(i, i + 1));
  assert.equal(got, 128 * 1024);
  // Joining each byte to all before it (as before) would copy 8 GiB; doubling a buffer copies under 4 times.
  assert.ok(c.counters.inputCopied < 4 * bytes.length, `${c.counters.inputCopied} bytes copied`);
  c.destroy();
});

Deno.test("InputBuffer appends, consumes from the front and counts what it copied", () => {
  const b = new InputBuffer();
  b.append(new Uint8Array([1, 2, 3]));
  b.append(new Uint8Array([4, 5]));
  b.consume(2);
  assert.deepEqual([...b.bytes], [3, 4, 5]);
  assert.equal(b.copied, 3 + 2 + 3);
  b.consume(3);
  assert.equal(b.length, 0);
});

Deno.test("PINGs from a peer that never reads: GOAWAY ENHANCE_YOUR_CALM past 10,000 queued ACKs", async () => {
  const { c, t } = server({}, true);
  await tick(); // our SETTINGS and its ACK went out: from here the peer reads nothing
  const ping = pingFrame(new Uint8Array(8), false);
  for (let i = 0; i < 5_000; i++) c.receive(ping);
  await tick();
  assert.equal(c.usable, true);
  for (let i = 0; i < 5_001; i++) c.receive(ping);
  await tick();
  assert.equal(t.goawayCode(), "ENHANCE_YOUR_CALM");
  assert.ok(t.frames.filter((f) => f.type === FrameType.PING).length <= 10_000);
});

Deno.test("PINGs from a peer that reads are answered without limit", async () => {
  const { c, t } = server();
  const ping = pingFrame(new Uint8Array(8), false);
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 9_000; i++) c.receive(ping);
    await tick();
  }
  assert.equal(c.usable, true);
  assert.equal(t.frames.filter((f) => f.type === FrameType.PING).length, 27_000);
  c.destroy();
});

Deno.test("answers piling up for a peer that never reads end the connection at maxBufferedOutput", async () => {
  const { c, t } = server({
    limits: { maxBufferedOutput: 10_000 },
    onStream: (s) => {
      s.respond([[":status", "200"]]);
      s.write(new Uint8Array(1000));
      s.end();
    },
  }, true);
  for (let id = 1; id < 41; id += 2) c.receive(headers(id, true));
  await tick();
  assert.equal(t.goawayCode(), "ENHANCE_YOUR_CALM");
  assert.equal(t.closed, true);
});

Deno.test("a callback that throws resets its own stream with INTERNAL_ERROR; other streams go on", async () => {
  const errors: unknown[] = [];
  const { c, t } = server({
    onHandlerError: (e) => errors.push(e),
    onStream: (s) => {
      if (s.id === 1) throw new Error("bug in onStream");
      s.onData = () => {
        if (s.id === 3) throw new Error("bug in onData");
      };
      s.onEnd = () => s.respond([[":status", "204"]], true);
    },
  });
  c.receive(concat([headers(1), headers(3), headers(5)]));
  c.receive(
    concat([
      frame(FrameType.DATA, 0, 3, new Uint8Array(4)),
      frame(FrameType.DATA, Flag.END_STREAM, 5, new Uint8Array(4)),
    ]),
  );
  await tick();
  assert.deepEqual(t.resets(1), ["INTERNAL_ERROR"]);
  assert.deepEqual(t.resets(3), ["INTERNAL_ERROR"]);
  assert.ok(t.frames.some((f) => f.type === FrameType.HEADERS && f.streamId === 5), "stream 5 was answered");
  assert.equal(c.counters.handlerErrors, 2);
  assert.equal(errors.length, 2);
  assert.equal(c.usable, true);
  c.destroy();
});

Deno.test("readU32 reads the reserved bit only when asked not to mask it", () => {
  assert.equal(readU32(new Uint8Array([0x80, 0, 0, 1]), 0, true), 1);
});
