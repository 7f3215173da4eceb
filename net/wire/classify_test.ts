import assert from "node:assert/strict";
import fc from "fast-check";
import { flowKeyV4, flowKeyV6, ipv6FromString } from "./address.ts";
import { classify, type ClassifyOptions, PacketInfo } from "./classify.ts";
import { TcpFlags } from "./tcp_repr.ts";
import { special, tcp4, tcp6, udp4, udp6 } from "./testdata/captured.ts";
import { at } from "./testdata/hex.ts";

// lo's captured TCP and UDP carry partial checksums (testdata/capture.sh): classify those without verifying.
const NO_VERIFY: ClassifyOptions = { verifyChecksums: false };

function ok(packet: Uint8Array, options?: ClassifyOptions): PacketInfo {
  const info = new PacketInfo();
  assert.equal(classify(packet, info, options), null);
  return info;
}

Deno.test("classify() finds the 5-tuple, flags and payload of a captured IPv4 HTTP request", () => {
  const p = at(tcp4, 3);
  const info = ok(p, NO_VERIFY);
  assert.equal(info.version, 4);
  assert.equal(info.protocol, 6);
  assert.equal(info.src4, 0xc6120001);
  assert.equal(info.dst4, 0xc6120001);
  assert.equal(info.dstPort, 8080);
  assert.equal(info.tcpFlags, TcpFlags.PSH | TcpFlags.ACK);
  assert.equal(info.transportOffset, 20);
  assert.equal(info.payloadOffset, 52);
  assert.equal(info.payloadEnd, p.length);
  assert.equal(info.flowKey(p), flowKeyV4(0xc6120001, info.srcPort, 0xc6120001, 8080, 6));
});

Deno.test("classify() finds the transport of a captured IPv6 UDP datagram behind extension headers", () => {
  const p = at(special, 6);
  const info = ok(p, NO_VERIFY);
  assert.equal(info.version, 6);
  assert.equal(info.protocol, 17);
  assert.equal(info.transportOffset, 56);
  assert.equal(info.dstPort, 6002);
  assert.equal(new TextDecoder().decode(p.subarray(info.payloadOffset, info.payloadEnd)), "ipv6-ext-headers");
  const lo = ipv6FromString("::1");
  assert.equal(info.flowKey(p), flowKeyV6(lo, info.srcPort, lo, 6002, 17));
  assert.deepEqual(info.srcAddress(p), lo);
});

Deno.test("classify() accepts every captured packet but fragments, verifying ICMP and IPv4 header checksums", () => {
  for (const h of [...tcp4, ...tcp6, ...udp4, ...udp6, ...special]) {
    const p = at([h], 0);
    const info = new PacketInfo();
    const drop = classify(p, info, NO_VERIFY);
    const fragment = (p[0]! >> 4 === 4 && (p[6]! & 0x3f | p[7]!) !== 0) || (p[0]! >> 4 === 6 && p[6] === 44);
    assert.equal(drop, fragment ? "fragment" : null);
    if (drop === null && (info.protocol === 1 || info.protocol === 58)) assert.equal(classify(p, info), null);
  }
});

Deno.test("classify() reads ICMP type and code of a captured port unreachable", () => {
  const info = ok(at(udp6, 1));
  assert.deepEqual([info.protocol, info.icmpType, info.icmpCode, info.srcPort], [58, 1, 4, 0]);
});

Deno.test("classify() names every drop reason", () => {
  const syn = at(tcp4, 0);
  const info = new PacketInfo();
  const mutate = (f: (b: Uint8Array) => void, from = syn) => {
    const b = from.slice();
    f(b);
    return classify(b, info, NO_VERIFY);
  };
  assert.equal(classify(new Uint8Array(0), info), "truncated");
  assert.equal(classify(syn.subarray(0, 30), info), "truncated");
  assert.equal(mutate((b) => b[0] = 0x55), "badVersion");
  assert.equal(mutate((b) => b[0] = 0x44), "badHeaderLength");
  assert.equal(mutate((b) => b[3] = 10), "badLength");
  assert.equal(mutate((b) => b[32] = 0x40), "badHeaderLength", "TCP data offset 4");
  assert.equal(mutate((b) => b[32] = 0xf0), "truncated", "TCP data offset past the packet");
  assert.equal(mutate((b) => b[9] = 47), "unsupportedProtocol");
  assert.equal(mutate((b) => b[6] = 0x20), "fragment");
  const header = syn.slice();
  header[8] = 1;
  assert.equal(classify(header, info), "badChecksum");
  assert.equal(classify(at(tcp4, 0), info), "badChecksum", "lo's partial TCP checksum does not verify");
  assert.equal(mutate((b) => b[25] = 7, at(udp4, 0)), "badLength");
  assert.equal(mutate((b) => b[25] = 200, at(udp4, 0)), "truncated");
  assert.equal(mutate((b) => b[6] = 44, at(udp6, 0)), "fragment", "not really a fragment header, but read as one");
  assert.equal(mutate((b) => b[6] = 50, at(udp6, 0)), "unsupportedProtocol");
  assert.equal(mutate((b) => b[6] = 1, at(udp6, 0)), "unsupportedProtocol", "ICMPv4 inside IPv6");
  assert.equal(classify(at(udp4, 0).fill(0, 26, 28), info), null, "a zero UDP checksum over IPv4 means none");
  assert.equal(classify(at(udp6, 0).fill(0, 46, 48), info), "badChecksum", "zero UDP checksum over IPv6");
});

Deno.test("classify() never throws on arbitrary bytes, and what it accepts stays inside the packet", () => {
  const info = new PacketInfo();
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 120 }),
      fc.constantFrom(0x45, 0x46, 0x60),
      fc.constantFrom(6, 17, 1, 58, 0, 44, 60),
      (b, first, proto) => {
        if (b.length > 0) b[0] = first;
        if (b.length > 9 && first !== 0x60) b[9] = proto;
        if (b.length > 6 && first === 0x60) {
          b[6] = proto;
        }
        if (classify(b, info, NO_VERIFY) === null) {
          assert.ok(info.transportOffset <= info.payloadOffset && info.payloadOffset <= info.payloadEnd);
          assert.ok(info.payloadEnd <= info.ipLength && info.ipLength <= b.length);
        }
        classify(b, info);
      },
    ),
    { numRuns: 5000 },
  );
});
