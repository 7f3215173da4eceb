import assert from "node:assert/strict";
import fc from "fast-check";
import { classify, PacketInfo } from "./classify.ts";
import { buildPacketTooBig, buildUnreachable, ICMPV4_ERROR_MAX_LEN, ICMPV6_ERROR_MAX_LEN } from "./icmp_error.ts";
import { special, udp4, udp6 } from "./testdata/captured.ts";
import { at, filled } from "./testdata/hex.ts";

const QUERY4 = at(udp4, 0), UNREACH4 = at(udp4, 1), QUERY6 = at(udp6, 0), UNREACH6 = at(udp6, 1);

Deno.test("buildUnreachable() rebuilds the kernel's captured ICMPv4 port unreachable byte for byte", () => {
  const out = filled();
  const ident = (UNREACH4[4]! << 8) | UNREACH4[5]!;
  const n = buildUnreachable(out, QUERY4, { reason: "port", ident });
  assert.deepEqual(out.subarray(0, n), UNREACH4);
  assert.equal(out[n], 0xa5);
});

Deno.test("buildUnreachable() rebuilds the kernel's captured ICMPv6 port unreachable byte for byte", () => {
  const out = filled();
  const flowLabel = ((UNREACH6[1]! & 0xf) << 16) | (UNREACH6[2]! << 8) | UNREACH6[3]!;
  const n = buildUnreachable(out, QUERY6, { reason: "port", flowLabel });
  assert.deepEqual(out.subarray(0, n), UNREACH6);
});

Deno.test("buildUnreachable() rebuilds the kernel's error quoting an IPv6 packet with extension headers", () => {
  const [query, error] = [at(special, 6), at(special, 7)];
  const out = filled();
  const flowLabel = ((error[1]! & 0xf) << 16) | (error[2]! << 8) | error[3]!;
  assert.deepEqual(out.subarray(0, buildUnreachable(out, query, { reason: "port", flowLabel })), error);
});

Deno.test("buildUnreachable() answers from a given address with the host code", () => {
  const out = filled();
  const n = buildUnreachable(out, QUERY4, { reason: "host", from: 0xc6130001 });
  const info = new PacketInfo();
  assert.equal(classify(out.subarray(0, n), info), null);
  assert.equal(info.src4, 0xc6130001);
  assert.equal(info.icmpType, 3);
  assert.equal(info.icmpCode, 1);
  assert.throws(() => buildUnreachable(out, QUERY4, { reason: "host", from: new Uint8Array(16) }), TypeError);
});

Deno.test("buildUnreachable() quotes at most 576 bytes over IPv4 and 1280 over IPv6", () => {
  const big4 = at(special, 8); // a 1500-byte first fragment is not answered; make it whole
  big4[6] = 0x40;
  const out = filled(4000);
  assert.equal(buildUnreachable(out, big4, { reason: "port" }), ICMPV4_ERROR_MAX_LEN);
  const big6 = new Uint8Array(40 + 2000);
  big6.set(QUERY6.subarray(0, 48));
  big6[4] = 2000 >> 8;
  big6[5] = 2000 & 0xff;
  assert.equal(buildUnreachable(out, big6, { reason: "port" }), ICMPV6_ERROR_MAX_LEN);
});

Deno.test("buildUnreachable() quotes a kept prefix of a longer packet as it is", () => {
  const prefix = at(special, 6).subarray(0, 60); // IPv6 + hop-by-hop + destination options + 4 bytes of UDP
  const out = filled();
  const n = buildUnreachable(out, prefix, { reason: "port" });
  assert.equal(n, 40 + 8 + 60);
  assert.deepEqual(out.subarray(48, n), prefix);
  const prefix4 = QUERY4.subarray(0, 24);
  assert.equal(buildUnreachable(out, prefix4, { reason: "port" }), 20 + 8 + 24);
  assert.equal(buildUnreachable(out, QUERY4.subarray(0, 19), { reason: "port" }), 0);
});

Deno.test("buildUnreachable() sends nothing in answer to an ICMP error", () => {
  assert.equal(buildUnreachable(filled(), UNREACH4, { reason: "port" }), 0);
  assert.equal(buildUnreachable(filled(), UNREACH6, { reason: "port" }), 0);
});

Deno.test("buildUnreachable() sends nothing in answer to a fragment after the first", () => {
  assert.equal(buildUnreachable(filled(), at(special, 9), { reason: "port" }), 0);
  assert.equal(buildUnreachable(filled(), at(special, 12), { reason: "port" }), 0);
});

Deno.test("buildUnreachable() sends nothing to or from a multicast or broadcast address", () => {
  const toMulticast = QUERY4.slice();
  toMulticast[16] = 224;
  assert.equal(buildUnreachable(filled(), toMulticast, { reason: "port" }), 0);
  const fromBroadcast = QUERY4.slice();
  fromBroadcast.fill(255, 12, 16);
  assert.equal(buildUnreachable(filled(), fromBroadcast, { reason: "port" }), 0);
  const toMulticast6 = QUERY6.slice();
  toMulticast6[24] = 0xff;
  assert.equal(buildUnreachable(filled(), toMulticast6, { reason: "port" }), 0);
  assert.ok(buildPacketTooBig(filled(), toMulticast6, { mtu: 1280 }) > 0, "RFC 4443 2.4 (e.2) allows it");
  const fromUnspecified = QUERY6.slice();
  fromUnspecified.fill(0, 8, 24);
  assert.equal(buildUnreachable(filled(), fromUnspecified, { reason: "port" }), 0);
});

Deno.test("buildPacketTooBig() carries the MTU in both families", () => {
  const out = filled();
  const info = new PacketInfo();
  let n = buildPacketTooBig(out, QUERY4, { mtu: 1400 });
  assert.equal(classify(out.subarray(0, n), info), null);
  assert.deepEqual([info.icmpType, info.icmpCode, (out[26]! << 8) | out[27]!], [3, 4, 1400]);
  n = buildPacketTooBig(out, QUERY6, { mtu: 1280 });
  assert.equal(classify(out.subarray(0, n), info), null);
  assert.deepEqual([info.icmpType, (out[46]! << 8) | out[47]!], [2, 1280]);
});

Deno.test("buildUnreachable() never throws on arbitrary offending bytes", () => {
  const out = new Uint8Array(1400);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 120 }), fc.boolean(), (b, v6) => {
      if (b.length > 0) b[0] = (v6 ? 0x60 : 0x45) | (b[0]! & (v6 ? 0x0f : 0));
      const n = buildUnreachable(out, b, { reason: "port" });
      if (n > 0) assert.equal(classify(out.subarray(0, n), new PacketInfo()), null);
    }),
    { numRuns: 2000 },
  );
});
