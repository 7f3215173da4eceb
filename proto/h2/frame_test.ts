import assert from "node:assert/strict";
import { filled, hex, toHex } from "../../net/wire/testdata/hex.ts";
import {
  emitHeader,
  ErrorCode,
  errorName,
  Flag,
  frame,
  FrameType,
  goawayFrame,
  HEADER_LENGTH,
  parseHeader,
  parseSettings,
  pingFrame,
  PREFACE,
  readU32,
  rstStreamFrame,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from "./frame.ts";

// Frames written out by hand from RFC 9113 section 4.1 (length 24, type 8, flags 8, R 1, stream id 31).

Deno.test("PREFACE is the 24 octets of RFC 9113 section 3.4", () => {
  assert.equal(toHex(PREFACE), "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a");
  assert.equal(PREFACE.length, 24);
});

Deno.test("parseHeader() reads a 24-bit length, type, flags and stream id at an offset", () => {
  const b = hex("ffff" + "123456" + "00" + "09" + "7ffffffe");
  assert.deepEqual(parseHeader(b, 2), {
    length: 0x123456,
    type: FrameType.DATA,
    flags: Flag.END_STREAM | Flag.PADDED,
    streamId: 0x7ffffffe,
  });
  assert.deepEqual(parseHeader(hex("ffffff" + "01" + "25" + "00000001")), {
    length: 0xffffff,
    type: FrameType.HEADERS,
    flags: Flag.END_STREAM | Flag.END_HEADERS | Flag.PRIORITY,
    streamId: 1,
  });
});

Deno.test("parseHeader() ignores the reserved bit of the stream id", () => {
  assert.equal(parseHeader(hex("000000" + "00" + "00" + "80000003")).streamId, 3);
  assert.equal(parseHeader(hex("000000" + "04" + "00" + "80000000")).streamId, 0);
  assert.equal(parseHeader(hex("000000" + "00" + "00" + "ffffffff")).streamId, 0x7fffffff);
});

Deno.test("emitHeader() writes exactly 9 bytes at the offset, the reserved bit cleared", () => {
  const b = filled(16);
  emitHeader(b, 3, { length: 0x0a0b0c, type: FrameType.WINDOW_UPDATE, flags: 0, streamId: 0xffffffff });
  assert.equal(toHex(b), "a5a5a5" + "0a0b0c" + "08" + "00" + "7fffffff" + "a5a5a5a5");
  const h = { length: 0xffffff, type: 0xfe, flags: 0xff, streamId: 0x01020304 };
  const c = filled(HEADER_LENGTH);
  emitHeader(c, 0, h);
  assert.equal(toHex(c), "fffffffeff01020304");
  assert.deepEqual(parseHeader(c), h, "parse and emit round-trip");
});

Deno.test("frame() puts header and payload in one buffer; without a payload it is the header alone", () => {
  assert.equal(toHex(frame(FrameType.DATA, Flag.END_STREAM, 1, hex("6869"))), "000002000100000001" + "6869");
  assert.equal(toHex(frame(FrameType.SETTINGS, Flag.ACK, 0)), "000000040100000000");
});

Deno.test("settingsFrame() writes each setting as a 16-bit id and a 32-bit value", () => {
  const f = settingsFrame([[Setting.MAX_CONCURRENT_STREAMS, 100], [Setting.INITIAL_WINDOW_SIZE, 0x7fffffff]]);
  assert.equal(toHex(f), "00000c040000000000" + "000300000064" + "00047fffffff");
  assert.equal(toHex(settingsFrame([])), "000000040000000000");
});

Deno.test("parseSettings() reads settings in order from a payload inside a larger buffer", () => {
  const b = hex("a5a5" + "000100001000" + "000200000000" + "0005ffffffff" + "a5");
  assert.deepEqual(parseSettings(b.subarray(2, 20)), [
    [Setting.HEADER_TABLE_SIZE, 4096],
    [Setting.ENABLE_PUSH, 0],
    [Setting.MAX_FRAME_SIZE, 0xffffffff],
  ]);
  assert.deepEqual(parseSettings(new Uint8Array(0)), []);
  const f = settingsFrame([[Setting.MAX_HEADER_LIST_SIZE, 65536], [0xabcd, 7]]);
  assert.deepEqual(parseSettings(f.subarray(HEADER_LENGTH)), [[Setting.MAX_HEADER_LIST_SIZE, 65536], [0xabcd, 7]]);
});

Deno.test("parseSettings() returns null for a payload whose length is not a multiple of 6", () => {
  assert.equal(parseSettings(hex("00010000100000")), null);
  assert.equal(parseSettings(hex("0001")), null);
  assert.equal(parseSettings(hex("00010000100000020000")), null);
});

Deno.test("windowUpdateFrame() writes a 31-bit increment with the reserved bit cleared", () => {
  assert.equal(toHex(windowUpdateFrame(0, 0x7fffffff)), "000004080000000000" + "7fffffff");
  assert.equal(toHex(windowUpdateFrame(5, 65535)), "000004080000000005" + "0000ffff");
  assert.equal(toHex(windowUpdateFrame(1, 0x80000001)), "000004080000000001" + "00000001");
});

Deno.test("rstStreamFrame() writes the stream and the 32-bit error code", () => {
  assert.equal(toHex(rstStreamFrame(1, ErrorCode.CANCEL)), "000004030000000001" + "00000008");
  assert.equal(toHex(rstStreamFrame(0x7fffffff, 0xdeadbeef)), "00000403007fffffff" + "deadbeef");
});

Deno.test("goawayFrame() writes last stream id, code and the debug text as UTF-8", () => {
  assert.equal(
    toHex(goawayFrame(7, ErrorCode.PROTOCOL_ERROR, "bad")),
    "00000b070000000000" + "00000007" + "00000001" + "626164",
  );
  assert.equal(toHex(goawayFrame(0, ErrorCode.NO_ERROR)), "000008070000000000" + "00000000" + "00000000");
  assert.equal(toHex(goawayFrame(0xffffffff, ErrorCode.ENHANCE_YOUR_CALM, "é")).slice(18), "7fffffff0000000bc3a9");
});

Deno.test("pingFrame() sets the ACK flag only on an answer and carries the 8 bytes", () => {
  const data = hex("0102030405060708");
  assert.equal(toHex(pingFrame(data, false)), "000008060000000000" + "0102030405060708");
  assert.equal(toHex(pingFrame(data, true)), "000008060100000000" + "0102030405060708");
});

Deno.test("readU32() reads big-endian and clears the top bit only when asked", () => {
  const b = hex("00" + "80000001");
  assert.equal(readU32(b, 1), 0x80000001);
  assert.equal(readU32(b, 1, true), 1);
  assert.equal(readU32(hex("ffffffff"), 0), 0xffffffff);
});

Deno.test("errorName() names RFC 9113 codes and shows others in hex", () => {
  assert.equal(errorName(0), "NO_ERROR");
  assert.equal(errorName(ErrorCode.CANCEL), "CANCEL");
  assert.equal(errorName(ErrorCode.FLOW_CONTROL_ERROR), "FLOW_CONTROL_ERROR");
  assert.equal(errorName(0xd), "HTTP_1_1_REQUIRED");
  assert.equal(errorName(0xe), "0xe");
  assert.equal(errorName(0xdeadbeef), "0xdeadbeef");
});
