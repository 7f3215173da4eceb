import assert from "node:assert/strict";
import fc from "fast-check";
import { foldSum, pseudoHeaderSumV4, pseudoHeaderSumV6 } from "./checksum.ts";
import { emitTcp, parseTcp, tcpBufferLen, TcpSegment } from "./tcp.ts";
import { TcpFlags, type TcpRepr } from "./tcp_repr.ts";
import { tcpRepr } from "./testdata/arbitrary.ts";
import { sack, tcp4, tcp6 } from "./testdata/captured.ts";
import { at, filled } from "./testdata/hex.ts";

/**
 * The TCP segment of a captured IPv4 packet without options, and its pseudo-header sum. Captured on lo, whose
 * checksum offload leaves the folded pseudo-header sum in the field (see testdata/capture.sh): parse them with
 * null, and check the field against the sum.
 */
function v4(packet: Uint8Array): [TcpSegment, number] {
  const seg = packet.subarray(20);
  return [new TcpSegment(seg), pseudoHeaderSumV4(0xc6120001, 0xc6120001, 6, seg.length)];
}
function v6(packet: Uint8Array): [TcpSegment, number] {
  const seg = packet.subarray(40);
  return [new TcpSegment(seg), pseudoHeaderSumV6(packet.subarray(8, 24), packet.subarray(24, 40), 6, seg.length)];
}
function parsed(seg: TcpSegment, sum: number | null): TcpRepr {
  const repr = parseTcp(seg, sum);
  if (typeof repr === "string") throw new Error(`unexpected drop ${repr}`);
  return repr;
}

Deno.test("parseTcp() reads a captured Linux SYN with MSS, SACK-permitted, timestamps, NOP and window scale", () => {
  const [seg, sum] = v4(at(tcp4, 0));
  assert.equal(seg.headerLen, 40);
  assert.equal(seg.checksum, foldSum(sum), "lo leaves the pseudo-header sum for offload");
  const repr = parsed(seg, null);
  assert.equal(repr.srcPort, seg.srcPort);
  assert.equal(repr.dstPort, 8080);
  assert.equal(repr.seq, seg.seq);
  assert.equal(repr.ack, 0);
  assert.equal(repr.flags, TcpFlags.SYN);
  assert.equal(repr.window, 0xfaf0);
  assert.equal(repr.urgent, 0);
  assert.equal(repr.mss, 1460);
  assert.equal(repr.sackPermitted, true);
  assert.equal(repr.windowScale, 10);
  assert.equal(repr.timestamps?.[1], 0);
  assert.equal(repr.sackBlocks, undefined);
  assert.equal(repr.payload.length, 0);
});

Deno.test("parseTcp() reads the SYN-ACK and the HTTP request of a captured IPv6 connection", () => {
  const [synAck, s1] = v6(at(tcp6, 1));
  assert.equal(synAck.checksum, foldSum(s1));
  const sa = parsed(synAck, null);
  assert.equal(sa.flags, TcpFlags.SYN | TcpFlags.ACK);
  assert.equal(sa.mss, 1440);
  const [request, s3] = v6(at(tcp6, 3));
  assert.equal(request.checksum, foldSum(s3));
  const rq = parsed(request, null);
  assert.equal(rq.flags, TcpFlags.PSH | TcpFlags.ACK);
  assert.equal(rq.mss, undefined);
  assert.ok(rq.timestamps !== undefined);
  assert.equal(new TextDecoder().decode(rq.payload.subarray(0, 14)), "GET / HTTP/1.1");
  assert.equal(rq.payload.buffer, request.buffer.buffer, "the payload is not copied");
});

Deno.test("parseTcp() reads the SACK block of a captured duplicate ACK", () => {
  const [seg] = v4(at(sack, 0));
  const repr = parsed(seg, null);
  assert.equal(repr.flags, TcpFlags.ACK);
  assert.equal(repr.sackBlocks?.length, 1);
  const [left, right] = repr.sackBlocks![0]!;
  assert.equal(left, 0xb3b0716d);
  assert.equal(right, 0xb3b16ff5);
  assert.ok(left - repr.ack > 0, "the block lies above the cumulative ACK");
  assert.ok(repr.timestamps !== undefined);
});

const ALL = [...tcp4.map((_, i) => v4(at(tcp4, i))), ...tcp6.map((_, i) => v6(at(tcp6, i))), v4(at(sack, 0))];

Deno.test("emitTcp() rebuilds every captured segment byte for byte around the checksum", () => {
  for (const [seg] of ALL) {
    const repr = parsed(seg, null);
    const out = filled(tcpBufferLen(repr));
    emitTcp(repr, new TcpSegment(out), null);
    assert.equal(new TcpSegment(out).checksum, 0);
    out[16] = seg.buffer[16]!;
    out[17] = seg.buffer[17]!;
    assert.deepEqual(out, seg.buffer);
  }
});

Deno.test("emitTcp() computes a checksum that parseTcp() verifies, on every captured segment", () => {
  for (const [seg, sum] of ALL) {
    const repr = parsed(seg, null);
    const out = new TcpSegment(filled(tcpBufferLen(repr)));
    emitTcp(repr, out, sum);
    assert.ok(out.verifyChecksum(sum));
    assert.ok(typeof parseTcp(out, sum) !== "string");
  }
});

Deno.test("parseTcp() reports a bad checksum, and skips the check when given null", () => {
  const [seg, sum] = v4(at(tcp4, 3));
  seg.fillChecksum(sum);
  assert.ok(typeof parseTcp(seg, sum) !== "string");
  seg.buffer[seg.buffer.length - 1]! ^= 0x40;
  assert.equal(parseTcp(seg, sum), "badChecksum");
  assert.equal(parsed(seg, null).payload.length, seg.buffer.length - seg.headerLen);
});

/** A SYN-like header with the given option bytes (padded to 4 with EOL). */
function withOptions(...options: number[]): TcpSegment {
  const len = 20 + Math.ceil(options.length / 4) * 4;
  const b = new Uint8Array(len);
  b[12] = (len / 4) << 4;
  b[13] = TcpFlags.SYN;
  b.set(options, 20);
  return new TcpSegment(b);
}

Deno.test("parseTcp() skips unknown options and known ones of the wrong size", () => {
  const repr = parsed(withOptions(0xfe, 4, 0xaa, 0xbb, 2, 3, 9, 1, 3, 3, 7), null);
  assert.equal(repr.mss, undefined);
  assert.equal(repr.windowScale, 7);
});

Deno.test("parseTcp() stops at EOL and at an option whose length is below 2 or past the header", () => {
  assert.equal(parsed(withOptions(0, 2, 4, 5, 0xb4), null).mss, undefined);
  const bad = parsed(withOptions(3, 3, 7, 0xfe, 1, 2, 4, 5, 0xb4), null);
  assert.equal(bad.windowScale, 7);
  assert.equal(bad.mss, undefined);
  assert.equal(parsed(withOptions(1, 2, 4, 5), null).mss, undefined);
  assert.equal(parsed(withOptions(2, 9, 5, 0xb4), null).mss, undefined);
});

Deno.test("TcpSegment.newChecked() rejects a short header and a data offset below 5 or past the buffer", () => {
  const b = at(tcp4, 0).subarray(20);
  assert.equal(TcpSegment.newChecked(b.subarray(0, 19)), "truncated");
  assert.equal(TcpSegment.newChecked(b.subarray(0, 39)), "truncated");
  const low = b.slice();
  low[12] = 0x40;
  assert.equal(TcpSegment.newChecked(low), "badHeaderLength");
  assert.ok(TcpSegment.newChecked(b) instanceof TcpSegment);
});

Deno.test("emitTcp() refuses more than 40 bytes of options, 5 SACK blocks, or a buffer of the wrong size", () => {
  const base: TcpRepr = {
    srcPort: 1,
    dstPort: 2,
    seq: 3,
    ack: 4,
    flags: TcpFlags.ACK,
    window: 5,
    urgent: 0,
    payload: new Uint8Array(0),
  };
  const blocks: [number, number][] = [[1, 2], [3, 4], [5, 6], [7, 8]];
  const tooMany = { ...base, timestamps: [1, 2] as const, sackBlocks: blocks };
  assert.throws(() => emitTcp(tooMany, new TcpSegment(filled(tcpBufferLen(tooMany))), null), RangeError);
  const five = { ...base, sackBlocks: [...blocks, [9, 10] as [number, number]] };
  assert.throws(() => emitTcp(five, new TcpSegment(filled(tcpBufferLen(five))), null), RangeError);
  assert.throws(() => emitTcp(base, new TcpSegment(filled(21)), null), RangeError);
});

const u32 = fc.nat({ max: 0xffffffff });

Deno.test("parseTcp(emitTcp(x)) equals x for any options that fit", () => {
  fc.assert(
    fc.property(tcpRepr, u32, (repr, sum) => {
      const out = filled(tcpBufferLen(repr));
      emitTcp(repr, new TcpSegment(out), sum);
      assert.deepEqual(parsed(new TcpSegment(out), sum), repr);
    }),
    { numRuns: 500 },
  );
});

Deno.test("TcpSegment.newChecked() and parseTcp() never throw on arbitrary bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
      const seg = TcpSegment.newChecked(b);
      if (typeof seg === "string") return;
      const repr = parseTcp(seg, 0);
      if (typeof repr === "string") assert.equal(repr, "badChecksum");
      const r = parsed(seg, null);
      assert.ok((r.sackBlocks?.length ?? 0) <= 4);
    }),
    { numRuns: 3000 },
  );
});
