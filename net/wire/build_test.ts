import assert from "node:assert/strict";
import fc from "fast-check";
import { buildIcmpPacket, buildTcpPacket, buildUdpPacket, type IpHeader } from "./build.ts";
import { foldSum } from "./checksum.ts";
import { classify, PacketInfo } from "./classify.ts";
import { IcmpMessage } from "./icmp.ts";
import { parseIcmpv4 } from "./icmpv4.ts";
import { parseTcp, TcpSegment } from "./tcp.ts";
import { tcpRepr } from "./testdata/arbitrary.ts";
import type { TcpRepr } from "./tcp_repr.ts";
import { sack, special, tcp4, tcp6, udp4 } from "./testdata/captured.ts";
import { at, filled } from "./testdata/hex.ts";
import { UdpDatagram } from "./udp.ts";

/** The builder arguments that describe a captured IPv4 or IPv6 packet (no IPv4 options). */
function headerOf(p: Uint8Array): IpHeader {
  if (p[0]! >> 4 === 4) {
    const v = new DataView(p.buffer, p.byteOffset);
    return {
      src: v.getUint32(12),
      dst: v.getUint32(16),
      ttl: p[8]!,
      tos: p[1]!,
      ident: v.getUint16(4),
      dontFragment: (p[6]! & 0x40) !== 0,
    };
  }
  return {
    src: p.slice(8, 24),
    dst: p.slice(24, 40),
    hopLimit: p[7]!,
    flowLabel: ((p[1]! & 0xf) << 16) | (p[2]! << 8) | p[3]!,
  };
}
function tcpOf(p: Uint8Array): TcpRepr {
  const r = parseTcp(new TcpSegment(p.subarray(p[0]! >> 4 === 4 ? 20 : 40)), null);
  if (typeof r === "string") throw new Error(r);
  return r;
}

Deno.test("buildTcpPacket() with partial checksums rebuilds every captured lo packet byte for byte", () => {
  for (const p of [...tcp4, ...tcp6, ...sack].map((h) => at([h], 0))) {
    const out = filled();
    const n = buildTcpPacket(out, headerOf(p), tcpOf(p), { checksum: "partial" });
    assert.equal(n, p.length);
    assert.deepEqual(out.subarray(0, n), p);
    assert.equal(out[n], 0xa5, "nothing is written past the packet");
  }
});

Deno.test("buildTcpPacket() with full checksums makes packets that classify() verifies", () => {
  const info = new PacketInfo();
  for (const p of [at(tcp4, 0), at(tcp6, 3)]) {
    const out = filled();
    const n = buildTcpPacket(out, headerOf(p), tcpOf(p));
    assert.equal(classify(out.subarray(0, n), info), null);
    assert.equal(info.payloadEnd - info.payloadOffset, tcpOf(p).payload.length);
    assert.equal(classify(p, info), "badChecksum", "the captured partial sum does not verify");
  }
});

Deno.test("buildTcpPacket() with checksum none leaves the field zero", () => {
  const p = at(tcp4, 3);
  const out = filled();
  buildTcpPacket(out, headerOf(p), tcpOf(p), { checksum: "none" });
  assert.equal(out[36], 0);
  assert.equal(out[37], 0);
});

Deno.test("buildUdpPacket() rebuilds a captured DNS query byte for byte", () => {
  const p = at(udp4, 0);
  const d = new UdpDatagram(p.subarray(20));
  const out = filled();
  const n = buildUdpPacket(out, headerOf(p), { srcPort: d.srcPort, dstPort: d.dstPort, payload: d.payload }, {
    checksum: "partial",
  });
  assert.deepEqual(out.subarray(0, n), p);
  buildUdpPacket(out, headerOf(p), { srcPort: d.srcPort, dstPort: d.dstPort, payload: d.payload });
  assert.equal(classify(out.subarray(0, n), new PacketInfo()), null);
  assert.notEqual(foldSum(d.checksum), new UdpDatagram(out.subarray(20, n)).checksum);
});

Deno.test("buildIcmpPacket() rebuilds the kernel's captured echo reply byte for byte", () => {
  const reply = at(special, 1);
  const repr = parseIcmpv4(new IcmpMessage(reply.subarray(20)));
  assert.ok(typeof repr !== "string");
  const out = filled();
  const n = buildIcmpPacket(out, headerOf(reply), repr);
  assert.deepEqual(out.subarray(0, n), reply);
});

Deno.test("buildTcpPacket() throws RangeError into a buffer too small, without writing past it", () => {
  const p = at(tcp4, 3);
  const out = filled(p.length - 1);
  assert.throws(() => buildTcpPacket(out, headerOf(p), tcpOf(p)), RangeError);
});

Deno.test("classify() and parseTcp() read back what buildTcpPacket() wrote, for both families", () => {
  const u32 = fc.nat({ max: 0xffffffff });
  const ip = fc.oneof(
    fc.record({ src: u32, dst: u32 }).map((r) => ({ ...r }) as IpHeader),
    fc.record({
      src: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      dst: fc.uint8Array({ minLength: 16, maxLength: 16 }),
    })
      .map((r) => ({ ...r }) as IpHeader),
  );
  const info = new PacketInfo();
  const out = new Uint8Array(2048);
  fc.assert(
    fc.property(ip, tcpRepr, (hdr, tcp) => {
      const n = buildTcpPacket(out, hdr, tcp);
      const packet = out.subarray(0, n);
      assert.equal(classify(packet, info), null);
      assert.equal(info.version, typeof hdr.src === "number" ? 4 : 6);
      assert.deepEqual(info.srcAddress(packet), hdr.src);
      assert.equal(info.dstPort, tcp.dstPort);
      assert.equal(info.tcpFlags, tcp.flags);
      const back = parseTcp(new TcpSegment(packet.subarray(info.transportOffset, info.ipLength)), null);
      assert.deepEqual(back, tcp);
    }),
    { numRuns: 300 },
  );
});
