import assert from "node:assert/strict";
import { Connection, type Transport } from "./connection.ts";
import {
  ErrorCode,
  errorName,
  Flag,
  frame,
  FrameType,
  HEADER_LENGTH,
  parseHeader,
  PREFACE,
  readU32,
  settingsFrame,
} from "./frame.ts";
import { HpackEncoder } from "./hpack.ts";
import { allowed, CLOSED_KEPT, ClosedStreams, isClosed, RESET_GRACE_MS, type StreamState } from "./stream_state.ts";
import { concat } from "../../base/bytes.ts";

const STATES: StreamState[] = [
  "idle",
  "open",
  "half-closed (local)",
  "half-closed (remote)",
  "closed (reset sent)",
  "closed (reset)",
  "closed",
];

Deno.test("allowed() permits exactly RFC 9113 section 5.1's transitions, and nothing leaves closed (reset)", () => {
  const expected = new Set([
    "idle=>open",
    "idle=>closed (reset sent)",
    "open=>half-closed (local)",
    "open=>half-closed (remote)",
    "open=>closed (reset sent)",
    "open=>closed (reset)",
    "half-closed (local)=>closed",
    "half-closed (local)=>closed (reset sent)",
    "half-closed (local)=>closed (reset)",
    "half-closed (remote)=>closed",
    "half-closed (remote)=>closed (reset sent)",
    "half-closed (remote)=>closed (reset)",
    "closed (reset sent)=>closed (reset)",
    "closed=>closed (reset)",
  ]);
  const actual = new Set<string>();
  for (const from of STATES) for (const to of STATES) if (allowed(from, to)) actual.add(`${from}=>${to}`);
  assert.deepEqual([...actual].sort(), [...expected].sort());
  assert.deepEqual(STATES.filter(isClosed), ["closed (reset sent)", "closed (reset)", "closed"]);
});

Deno.test("ClosedStreams ignores late frames after our RST_STREAM for RESET_GRACE_MS, then answers STREAM_CLOSED", () => {
  let now = 0;
  const lines: string[] = [];
  const closed = new ClosedStreams(() => now, (l) => lines.push(l));
  closed.add(1, "closed (reset sent)");
  assert.equal(closed.data(1, false, 10), "ignore");
  now += RESET_GRACE_MS;
  assert.equal(closed.headers(1, true, [["grpc-status", "0"]]), "ignore", "the grace's last millisecond");
  now += 1;
  assert.equal(closed.data(1, false, 10), "stream-closed");
  assert.deepEqual(lines, [
    `h2 stream 1 closed (reset sent)=>closed (reset) (no late frames ${RESET_GRACE_MS} ms after our RST_STREAM)`,
  ]);
});

Deno.test("ClosedStreams: the peer's RST_STREAM makes what follows a stream error; END_STREAM both ways a connection error", () => {
  const closed = new ClosedStreams(() => 0);
  closed.add(1, "closed (reset sent)");
  closed.peerReset(1);
  assert.equal(closed.data(1, false, 1), "stream-closed");
  closed.add(3, "closed");
  assert.equal(closed.headers(3, true, []), "connection-closed");
  assert.equal(closed.data(3, true, 0), "connection-closed");
  closed.add(5, "closed (reset)");
  assert.equal(closed.headers(5, true, []), "stream-closed");
  assert.equal(closed.data(7, false, 1), undefined, "not remembered");
});

Deno.test("ClosedStreams checks the rest of a request answered early: content-length and trailers", () => {
  const closed = new ClosedStreams(() => 0);
  closed.add(1, "closed (reset sent)", { contentLeft: 10 });
  assert.equal(closed.data(1, false, 4), "ignore");
  assert.equal(closed.data(1, true, 6), "ignore", "exactly the declared length");
  closed.add(3, "closed (reset sent)", { contentLeft: 10 });
  assert.equal(closed.data(3, false, 11), "malformed");
  assert.equal(closed.data(3, false, 1), "ignore", "reported once, then ignored");
  closed.add(5, "closed (reset sent)", { contentLeft: undefined });
  assert.equal(closed.headers(5, false, [["x", "y"]]), "malformed", "trailers must end the stream");
  closed.add(7, "closed (reset sent)", { contentLeft: undefined });
  assert.equal(closed.headers(7, true, [[":path", "/"]]), "malformed", "no pseudo-headers in trailers");
  closed.add(9, "closed (reset sent)", { contentLeft: undefined });
  assert.equal(closed.headers(9, true, [["grpc-status", "0"]]), "ignore");
});

Deno.test("ClosedStreams remembers at most CLOSED_KEPT streams, forgetting the oldest", () => {
  const closed = new ClosedStreams(() => 0);
  for (let i = 0; i <= CLOSED_KEPT; i++) closed.add(1 + 2 * i, "closed");
  assert.equal(closed.size, CLOSED_KEPT);
  assert.equal(closed.has(1), false);
  assert.equal(closed.has(3), true);
});

/** Test double: keeps what the connection wrote, as frames. */
class FrameTransport implements Transport {
  readonly buffered = 0;
  readonly frames: { type: number; flags: number; streamId: number; payload: Uint8Array }[] = [];
  write(bytes: Uint8Array): void {
    for (let off = 0; off < bytes.length;) {
      const h = parseHeader(bytes, off);
      this.frames.push({ ...h, payload: bytes.slice(off + HEADER_LENGTH, off + HEADER_LENGTH + h.length) });
      off += HEADER_LENGTH + h.length;
    }
  }
  close(): void {}
  resets(id: number): string[] {
    return this.frames.filter((f) => f.type === FrameType.RST_STREAM && f.streamId === id).map((f) =>
      errorName(readU32(f.payload, 0))
    );
  }
}

const tick = () => new Promise<void>((r) => setTimeout(r, 0));

Deno.test("a server logs each stream's states, ignores DATA that crosses its RST_STREAM, and resets DATA after the grace", async () => {
  let now = 0;
  const lines: string[] = [];
  const t = new FrameTransport();
  const c = new Connection("server", t, {
    now: () => now,
    log: (l) => lines.push(l),
    onStream: (s) => s.reset(ErrorCode.CANCEL),
  });
  const block = new HpackEncoder().encode([[":method", "POST"], [":scheme", "http"], [":path", "/"]]);
  c.receive(concat([PREFACE, settingsFrame([]), frame(FrameType.HEADERS, Flag.END_HEADERS, 1, block)]));
  await tick();
  assert.deepEqual(t.resets(1), ["CANCEL"]);
  c.receive(frame(FrameType.DATA, 0, 1, new Uint8Array(100)));
  await tick();
  assert.deepEqual(t.resets(1), ["CANCEL"], "crossed our RST_STREAM: ignored");
  now += RESET_GRACE_MS + 1;
  c.receive(frame(FrameType.DATA, 0, 1, new Uint8Array(100)));
  await tick();
  assert.deepEqual(t.resets(1), ["CANCEL", "STREAM_CLOSED"]);
  assert.equal(c.usable, true, "a stream error only");
  assert.deepEqual(lines, [
    "h2 stream 1 idle=>open (HEADERS received)",
    "h2 stream 1 open=>closed (reset sent) (reset by this side (CANCEL))",
    `h2 stream 1 closed (reset sent)=>closed (reset) (no late frames ${RESET_GRACE_MS} ms after our RST_STREAM)`,
  ]);
  c.destroy();
});
