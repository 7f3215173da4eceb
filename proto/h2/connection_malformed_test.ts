import assert from "node:assert/strict";
import { hex } from "../../net/wire/testdata/hex.ts";
import { Connection, type ConnectionOptions, type Stream, type Transport } from "./connection.ts";
import {
  ErrorCode,
  Flag,
  frame,
  FrameType,
  parseSettings,
  pingFrame,
  PREFACE,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from "./frame.ts";
import type { HeaderList } from "./hpack.ts";
import { concat } from "../../base/bytes.ts";
import { FrameLog, KiB, Recorder, td, te, tick, within } from "./_connection_fixture.ts";

// ------------------------------------------------------------------------------------------------ malformed input

/** Test double: a transport that keeps what the connection wrote, parsed into frames, and whether it was closed. */
class RecordingTransport implements Transport {
  readonly log = new FrameLog(false);
  readonly buffered = 0;
  closed = false;

  write(bytes: Uint8Array): void {
    this.log.add(bytes);
  }

  close(): void {
    this.closed = true;
  }
}

/** HPACK for POST http://tp.test/: indexed :method POST (3), :scheme http (6), :path / (4), then :authority as a
 *  literal without indexing on static name 1, 7 raw octets "tp.test" (RFC 7541 sections 6.1 and 6.2.2). */
const POST_BLOCK = hex("838684" + "01" + "07" + "74702e74657374");
const POST_HEADERS: HeaderList = [[":method", "POST"], [":scheme", "http"], [":path", "/"], [":authority", "tp.test"]];
/** What a client sends first: the preface, its SETTINGS (none changed) and the ACK of ours. */
const OPENING = concat([PREFACE, settingsFrame([]), frame(FrameType.SETTINGS, Flag.ACK, 0)]);

const headersFrame = (id: number, endStream = false, block = POST_BLOCK) =>
  frame(FrameType.HEADERS, Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0), id, block);
const dataFrame = (id: number, payload: Uint8Array, endStream = false) =>
  frame(FrameType.DATA, endStream ? Flag.END_STREAM : 0, id, payload);

/** A server Connection over a RecordingTransport. */
function serverUnderTest(options: ConnectionOptions = {}): { server: Connection; t: RecordingTransport } {
  const t = new RecordingTransport();
  return { server: new Connection("server", t, options), t };
}

/** Feeds `bytes` to a fresh server and returns the GOAWAY it wrote; checks it closed its transport and `closed`. */
async function connectionError(bytes: Uint8Array, options: ConnectionOptions = {}) {
  const { server, t } = serverUnderTest(options);
  server.receive(bytes);
  await tick();
  const err = await within(server.closed, 1000, "server.closed");
  const goaway = t.log.goaway();
  assert.ok(goaway, "a GOAWAY was written");
  assert.equal(err.code, goaway.code, "closed resolves with the GOAWAY's code");
  assert.equal(t.closed, true, "the transport was closed");
  assert.equal(server.usable, false);
  return goaway;
}

Deno.test("a server Connection writes its SETTINGS first and ACKs the client's", async () => {
  const { server, t } = serverUnderTest({ maxConcurrentStreams: 7, streamWindow: 12345 });
  server.receive(concat([PREFACE, settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 1000]])]));
  await tick();
  const [first, second] = t.log.frames;
  assert.equal(first?.type, FrameType.SETTINGS);
  assert.equal(first.flags, 0);
  assert.deepEqual(parseSettings(first.payload), [
    [Setting.INITIAL_WINDOW_SIZE, 12345],
    [Setting.MAX_FRAME_SIZE, 128 * KiB],
    [Setting.MAX_CONCURRENT_STREAMS, 7],
  ]);
  assert.deepEqual(second && { type: second.type, streamId: second.streamId }, {
    type: FrameType.WINDOW_UPDATE,
    streamId: 0,
  });
  assert.ok(t.log.frames.some((f) => f.type === FrameType.SETTINGS && f.flags === Flag.ACK && f.payload.length === 0));
  server.destroy();
});

Deno.test("a server accepts the preface and frames one byte at a time", async () => {
  let seen: Stream | undefined;
  const { server, t } = serverUnderTest({ onStream: (s) => (seen = s) });
  const bytes = concat([OPENING, headersFrame(1, true), pingFrame(hex("0001020304050607"), false)]);
  for (let i = 0; i < bytes.length; i++) server.receive(bytes.subarray(i, i + 1));
  await tick();
  assert.deepEqual(seen?.headers, POST_HEADERS);
  assert.equal(t.log.of(FrameType.PING).length, 1);
  assert.equal(t.log.goaway(), undefined);
  server.destroy();
});

Deno.test("a bad preface gets GOAWAY PROTOCOL_ERROR and the transport closed", async () => {
  const goaway = await connectionError(te.encode("GET / HTTP/1.1\r\nHost: tp.test\r\n\r\n"));
  assert.equal(goaway.code, ErrorCode.PROTOCOL_ERROR);
  assert.equal(goaway.lastStreamId, 0);
  // A preface that goes wrong only after a matching start fails as well.
  const late = await connectionError(te.encode("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"));
  assert.equal(late.code, ErrorCode.PROTOCOL_ERROR);
});

Deno.test("a first frame that is not SETTINGS gets GOAWAY PROTOCOL_ERROR", async () => {
  const goaway = await connectionError(concat([PREFACE, pingFrame(new Uint8Array(8), false)]));
  assert.equal(goaway.code, ErrorCode.PROTOCOL_ERROR);
});

Deno.test("a frame over our MAX_FRAME_SIZE gets GOAWAY FRAME_SIZE_ERROR before its payload arrived", async () => {
  // Only the header of a DATA frame of 128 KiB + 1 (0x020001) on stream 1: the length alone condemns it.
  const header = hex("020001" + "00" + "00" + "00000001");
  const goaway = await connectionError(concat([OPENING, headersFrame(1), header]));
  assert.equal(goaway.code, ErrorCode.FRAME_SIZE_ERROR);
  const small = await connectionError(concat([OPENING, headersFrame(1), dataFrame(1, new Uint8Array(16_385))]), {
    maxFrameSize: 16_384,
  });
  assert.equal(small.code, ErrorCode.FRAME_SIZE_ERROR);
  assert.equal(small.lastStreamId, 1);
});

Deno.test("DATA on stream 0 gets GOAWAY PROTOCOL_ERROR", async () => {
  const goaway = await connectionError(concat([OPENING, dataFrame(0, te.encode("hi"))]));
  assert.equal(goaway.code, ErrorCode.PROTOCOL_ERROR);
});

Deno.test("a WINDOW_UPDATE taking the connection window over 2^31-1 gets GOAWAY FLOW_CONTROL_ERROR", async () => {
  const goaway = await connectionError(concat([OPENING, windowUpdateFrame(0, 0x7fffffff)]));
  assert.equal(goaway.code, ErrorCode.FLOW_CONTROL_ERROR);
});

Deno.test("a malformed HPACK block gets GOAWAY COMPRESSION_ERROR", async () => {
  // An indexed field with index 0 (RFC 7541 section 6.1).
  const zero = await connectionError(concat([OPENING, headersFrame(1, true, hex("8286" + "80"))]));
  assert.equal(zero.code, ErrorCode.COMPRESSION_ERROR);
  // A dynamic table index (62) while the table is empty.
  const empty = await connectionError(concat([OPENING, headersFrame(1, true, hex("be"))]));
  assert.equal(empty.code, ErrorCode.COMPRESSION_ERROR);
  // A literal whose string runs past the block.
  const cut = await connectionError(concat([OPENING, headersFrame(1, true, hex("0107" + "7470"))]));
  assert.equal(cut.code, ErrorCode.COMPRESSION_ERROR);
});

Deno.test("a header block that never ends (CONTINUATION without END_HEADERS) is cut off with ENHANCE_YOUR_CALM", async () => {
  const part = new Uint8Array(16 * KiB).fill(0x40); // never decoded: the block is never complete
  const frames = [OPENING, frame(FrameType.HEADERS, 0, 1, part)];
  for (let i = 0; i < 20; i++) frames.push(frame(FrameType.CONTINUATION, 0, 1, part)); // 336 KiB in all
  const goaway = await connectionError(concat(frames));
  assert.equal(goaway.code, ErrorCode.ENHANCE_YOUR_CALM);
});

Deno.test("DATA past a stream's window resets it with FLOW_CONTROL_ERROR; another stream keeps working", async () => {
  const streams = new Map<number, Recorder>();
  const { server, t } = serverUnderTest({
    streamWindow: 16 * KiB,
    onStream: (s) => {
      const r = new Recorder(s);
      streams.set(s.id, r);
      s.onEnd = () => {
        r.events.push("end");
        s.respond([[":status", "200"]]);
        s.write(te.encode(`got ${r.received}`));
        s.end();
      };
    },
  });
  server.receive(concat([
    OPENING,
    headersFrame(1),
    headersFrame(3),
    dataFrame(1, new Uint8Array(16 * KiB + 1)), // one byte past the window we announced and the client ACKed
    dataFrame(3, new Uint8Array(100), true),
  ]));
  await tick();
  assert.deepEqual(t.log.resets(1), [ErrorCode.FLOW_CONTROL_ERROR]);
  assert.equal(streams.get(1)?.closeCode, ErrorCode.FLOW_CONTROL_ERROR);
  assert.equal(streams.get(1)?.received, 0, "the offending frame is not delivered");
  assert.deepEqual(streams.get(3)?.events, ["data", "end", "close 0"]);
  assert.deepEqual(t.log.resets(3), []);
  assert.equal(t.log.of(FrameType.HEADERS, 3).length, 1, "stream 3 was answered");
  assert.equal(td.decode(t.log.of(FrameType.DATA, 3)[0]?.payload), "got 100");
  assert.equal(t.log.goaway(), undefined);
  assert.equal(server.usable, true);
  // Stream 1's DATA still in flight is ignored, and the connection takes new streams.
  server.receive(concat([dataFrame(1, new Uint8Array(10)), headersFrame(5), dataFrame(5, new Uint8Array(5), true)]));
  await tick();
  assert.deepEqual(streams.get(5)?.events, ["data", "end", "close 0"]);
  assert.equal(t.log.goaway(), undefined);
  server.destroy();
});

Deno.test("a PING is answered with an ACK carrying the same 8 bytes", async () => {
  const { server, t } = serverUnderTest();
  const data = hex("0123456789abcdef");
  server.receive(concat([OPENING, pingFrame(data, false)]));
  await tick();
  const pings = t.log.of(FrameType.PING);
  assert.equal(pings.length, 1);
  assert.equal(pings[0]!.flags, Flag.ACK);
  assert.equal(pings[0]!.streamId, 0);
  assert.deepEqual(pings[0]!.payload, data);
  // A PING ACK we did not ask for is not answered.
  server.receive(pingFrame(data, true));
  await tick();
  assert.equal(t.log.of(FrameType.PING).length, 1);
  server.destroy();
});

Deno.test("frames of unknown types are ignored, on the connection and on streams", async () => {
  let seen: Recorder | undefined;
  const { server, t } = serverUnderTest({ onStream: (s) => (seen = new Recorder(s)) });
  server.receive(concat([
    OPENING,
    frame(0xfa, 0xff, 0, hex("deadbeef")),
    headersFrame(1),
    frame(0x20, 0, 1, new Uint8Array(1000)),
    frame(0xbb, 0, 99, new Uint8Array(0)), // even on a stream that was never opened
    dataFrame(1, te.encode("body"), true),
    pingFrame(new Uint8Array(8), false),
  ]));
  await tick();
  assert.equal(t.log.goaway(), undefined);
  assert.equal(seen?.text(), "body");
  assert.equal(seen?.ended, true);
  assert.equal(t.log.of(FrameType.PING).length, 1);
  assert.equal(server.usable, true);
  server.destroy();
});
