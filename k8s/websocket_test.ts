import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { encodeFrame, FrameDecoder, Opcode, unmask } from "./websocket.ts";

/** A server frame (unmasked), as RFC 6455 section 5.2 lays it out. */
function serverFrame(opcode: number, payload: Uint8Array, fin = true): Buffer {
  const len = payload.length;
  const head = len < 126 ? [len] : len < 65536 ? [126, len >> 8, len & 255] : [127, 0, 0, 0, 0, ...u32(len)];
  return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, ...head]), payload]);
}

function u32(n: number): number[] {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
}

Deno.test("encodeFrame() masks the payload and FrameDecoder() unmasks it, for every length encoding", () => {
  for (const len of [0, 1, 125, 126, 65535, 65536, 300_000]) {
    const payload = Buffer.alloc(len);
    for (let i = 0; i < len; i++) payload[i] = (i * 7) & 255;
    const frame = encodeFrame(Opcode.binary, new Uint8Array([0]), [payload]);
    assert.equal(frame[0], 0x82);
    assert.ok((frame[1]! & 0x80) !== 0, "client frames are masked");
    const [got] = new FrameDecoder().push(frame);
    assert.equal(got?.opcode, Opcode.binary);
    assert.equal(got?.payload.length, len + 1);
    assert.ok(got?.payload.subarray(1).equals(payload), `payload of ${len} bytes`);
  }
});

Deno.test("FrameDecoder() decodes frames split at every byte, joined fragments, and control frames between them", () => {
  const data = Buffer.concat([
    serverFrame(Opcode.binary, Buffer.from([0, 0x91, 0x1f]), true),
    serverFrame(Opcode.binary, Buffer.from("part one "), false),
    serverFrame(Opcode.ping, Buffer.from("p")),
    serverFrame(Opcode.continuation, Buffer.from("and two"), true),
    serverFrame(Opcode.binary, Buffer.alloc(70_000, 9)),
    serverFrame(Opcode.close, Buffer.from([0x03, 0xe8])),
  ]);
  for (const step of [1, 3, 1000, data.length]) {
    const d = new FrameDecoder();
    const frames = [];
    for (let i = 0; i < data.length; i += step) frames.push(...d.push(data.subarray(i, i + step)));
    assert.deepEqual(frames.map((f) => f.opcode), [
      Opcode.binary,
      Opcode.ping,
      Opcode.binary,
      Opcode.binary,
      Opcode.close,
    ]);
    assert.deepEqual([...frames[0]!.payload], [0, 0x91, 0x1f]);
    assert.equal(frames[2]!.payload.toString(), "part one and two");
    assert.equal(frames[3]!.payload.length, 70_000);
  }
});

Deno.test("FrameDecoder() rejects a frame over its limit", () => {
  assert.throws(() => new FrameDecoder(100).push(serverFrame(Opcode.binary, Buffer.alloc(101))), RangeError);
});

Deno.test("unmask() equals the byte-wise XOR of RFC 6455 section 5.3 at every alignment and length", () => {
  const mask = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);
  const buf = new Uint8Array(64 + 8);
  for (let offset = 0; offset < 4; offset++) {
    for (let len = 0; len <= 64; len++) {
      const p = buf.subarray(offset, offset + len);
      for (let i = 0; i < len; i++) p[i] = (i * 31 + offset) & 0xff;
      const want = p.map((b, i) => b ^ mask[i & 3]!);
      unmask(p, mask);
      assert.deepEqual(p, want, `offset ${offset}, length ${len}`);
    }
  }
});
