import assert from "node:assert/strict";
import fc from "fast-check";
import { foldSum, pseudoHeaderSumV4, pseudoHeaderSumV6 } from "./checksum.ts";
import { udp4, udp6 } from "./testdata/captured.ts";
import { at, filled } from "./testdata/hex.ts";
import { emitUdp, parseUdp, udpBufferLen, UdpDatagram, type UdpRepr } from "./udp.ts";

const QUERY4 = at(udp4, 0).subarray(20);
const QUERY6 = at(udp6, 0).subarray(40);
const SUM4 = pseudoHeaderSumV4(0xc6120001, 0xc6120001, 17, QUERY4.length);
const LOOPBACK6 = new Uint8Array(16).fill(0, 0, 15).fill(1, 15);
const SUM6 = pseudoHeaderSumV6(LOOPBACK6, LOOPBACK6, 17, QUERY6.length);

function checked(b: Uint8Array): UdpDatagram {
  const d = UdpDatagram.newChecked(b);
  if (typeof d === "string") throw new Error(`unexpected drop ${d}`);
  return d;
}

Deno.test("UdpDatagram reads a captured DNS query from dig", () => {
  const d = checked(QUERY4);
  assert.equal(d.dstPort, 5999);
  assert.equal(d.length, 36);
  assert.equal(d.payload.length, 28);
  assert.equal(d.checksum, foldSum(SUM4), "lo leaves the pseudo-header sum for offload");
  const repr = parseUdp(d, { pseudoSum: null, allowZero: true });
  assert.ok(typeof repr !== "string");
  assert.equal(repr.srcPort, d.srcPort);
  assert.equal(checked(QUERY6).checksum, foldSum(SUM6));
});

Deno.test("emitUdp() rebuilds captured datagrams byte for byte around the checksum, and verifies its own", () => {
  for (const [captured, sum] of [[QUERY4, SUM4], [QUERY6, SUM6]] as const) {
    const repr = parseUdp(checked(captured), { pseudoSum: null, allowZero: false });
    assert.ok(typeof repr !== "string");
    const out = filled(udpBufferLen(repr));
    emitUdp(repr, new UdpDatagram(out), null);
    out[6] = captured[6]!;
    out[7] = captured[7]!;
    assert.deepEqual(out, captured);
    emitUdp(repr, new UdpDatagram(out), sum);
    assert.deepEqual(parseUdp(checked(out), { pseudoSum: sum, allowZero: false }), repr);
  }
});

Deno.test("parseUdp() accepts a zero checksum over IPv4 only, and reports a wrong one", () => {
  const b = QUERY4.slice();
  b[6] = 0;
  b[7] = 0;
  assert.ok(typeof parseUdp(checked(b), { pseudoSum: SUM4, allowZero: true }) !== "string");
  assert.equal(parseUdp(checked(b), { pseudoSum: SUM4, allowZero: false }), "badChecksum");
  b[7] = 1;
  assert.equal(parseUdp(checked(b), { pseudoSum: SUM4, allowZero: true }), "badChecksum");
});

Deno.test("UdpDatagram.newChecked() rejects a short header and a length field below 8 or past the buffer", () => {
  assert.equal(UdpDatagram.newChecked(QUERY4.subarray(0, 7)), "truncated");
  assert.equal(UdpDatagram.newChecked(QUERY4.subarray(0, 35)), "truncated");
  const b = QUERY4.slice();
  b[5] = 7;
  assert.equal(UdpDatagram.newChecked(b), "badLength");
});

Deno.test("UdpDatagram.fillChecksum() sends a computed zero as 0xffff (RFC 768)", () => {
  // Payload chosen so the one's complement sum is 0xffff: the computed checksum would be 0.
  const d = new UdpDatagram(filled(10));
  emitUdp({ srcPort: 0, dstPort: 0, payload: Uint8Array.of(0xff, 0xf5) }, d, 0);
  assert.equal(d.checksum, 0xffff);
  assert.ok(d.verifyChecksum(0));
});

const udpRepr: fc.Arbitrary<UdpRepr> = fc.record({
  srcPort: fc.nat({ max: 0xffff }),
  dstPort: fc.nat({ max: 0xffff }),
  payload: fc.uint8Array({ maxLength: 300 }),
}).map((r) => ({ ...r }));

Deno.test("parseUdp(emitUdp(x)) equals x", () => {
  fc.assert(fc.property(udpRepr, fc.nat({ max: 0xfffffff }), (repr, sum) => {
    const out = filled(udpBufferLen(repr));
    emitUdp(repr, new UdpDatagram(out), sum);
    assert.deepEqual(parseUdp(checked(out), { pseudoSum: sum, allowZero: false }), repr);
  }));
});

Deno.test("UdpDatagram.newChecked() and parseUdp() never throw on arbitrary bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
      const d = UdpDatagram.newChecked(b);
      if (typeof d === "string") return;
      parseUdp(d, { pseudoSum: 0, allowZero: false });
      assert.ok(d.payload.length <= b.length - 8);
    }),
    { numRuns: 2000 },
  );
});
