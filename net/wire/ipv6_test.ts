import assert from "node:assert/strict";
import fc from "fast-check";
import { ipv6ToString } from "./address.ts";
import { IpProtocol } from "./ip_protocol.ts";
import {
  emitIpv6,
  findIpv6Transport,
  IPV6_HEADER_LEN,
  ipv6BufferLen,
  Ipv6Packet,
  type Ipv6Repr,
  type Ipv6Transport,
  parseIpv6,
} from "./ipv6.ts";
import { special, tcp6 } from "./testdata/captured.ts";
import { at, filled } from "./testdata/hex.ts";

const SYN = at(tcp6, 0);
const WITH_EXTENSIONS = at(special, 6); // UDP behind hop-by-hop and destination options
const FIRST_FRAGMENT = at(special, 11);
const LAST_FRAGMENT = at(special, 12);

function checked(b: Uint8Array): Ipv6Packet {
  const p = Ipv6Packet.newChecked(b);
  if (typeof p === "string") throw new Error(`unexpected drop ${p}`);
  return p;
}

function transportOf(b: Uint8Array): Ipv6Transport | string {
  const out = { protocol: -1, offset: -1 };
  return findIpv6Transport(checked(b), out) ?? out;
}

Deno.test("Ipv6Packet reads every field of a captured SYN", () => {
  const p = checked(SYN);
  assert.equal(p.version, 6);
  assert.equal(p.trafficClass, 0);
  assert.equal(p.flowLabel, 0xa3409);
  assert.equal(p.payloadLen, 40);
  assert.equal(p.nextHeader, IpProtocol.TCP);
  assert.equal(p.hopLimit, 64);
  assert.equal(ipv6ToString(p.src), "::1");
  assert.equal(ipv6ToString(p.dst), "::1");
  assert.deepEqual(transportOf(SYN), { protocol: IpProtocol.TCP, offset: 40 });
});

Deno.test("findIpv6Transport() walks a captured hop-by-hop and destination-options chain to UDP", () => {
  assert.equal(checked(WITH_EXTENSIONS).nextHeader, IpProtocol.HOP_BY_HOP);
  assert.deepEqual(transportOf(WITH_EXTENSIONS), { protocol: IpProtocol.UDP, offset: 56 });
  const udp = WITH_EXTENSIONS.subarray(56 + 8);
  assert.equal(new TextDecoder().decode(udp), "ipv6-ext-headers");
});

Deno.test("findIpv6Transport() refuses both captured fragments but accepts an atomic fragment", () => {
  assert.equal(transportOf(FIRST_FRAGMENT), "fragment");
  assert.equal(transportOf(LAST_FRAGMENT), "fragment");
  const atomic = FIRST_FRAGMENT.slice();
  atomic[43] = 0; // more-fragments off, offset 0 (RFC 6946)
  assert.deepEqual(transportOf(atomic), { protocol: IpProtocol.UDP, offset: 48 });
});

Deno.test("findIpv6Transport() refuses a hop-by-hop header that is not first", () => {
  const b = WITH_EXTENSIONS.slice();
  b[6] = IpProtocol.IPV6_DEST_OPTS;
  b[40] = IpProtocol.HOP_BY_HOP;
  assert.equal(transportOf(b), "badExtensionHeader");
});

Deno.test("findIpv6Transport() refuses a chain longer than 8 headers, ESP and no-next-header", () => {
  const n = 9;
  const b = new Uint8Array(IPV6_HEADER_LEN + 8 * n + 8);
  b[0] = 0x60;
  b[5] = 8 * n + 8;
  b[6] = IpProtocol.IPV6_DEST_OPTS;
  for (let i = 0; i < n; i++) b[IPV6_HEADER_LEN + 8 * i] = i < n - 1 ? IpProtocol.IPV6_DEST_OPTS : IpProtocol.UDP;
  assert.equal(transportOf(b), "badExtensionHeader");
  b[6] = IpProtocol.ESP;
  assert.equal(transportOf(b), "unsupportedProtocol");
  b[6] = IpProtocol.IPV6_NO_NEXT;
  assert.equal(transportOf(b), "unsupportedProtocol");
});

Deno.test("findIpv6Transport() reports an extension header running past the payload as truncated", () => {
  const b = WITH_EXTENSIONS.slice();
  b[41] = 200;
  assert.equal(transportOf(b), "truncated");
});

Deno.test("Ipv6Packet.newChecked() rejects short buffers, wrong versions and jumbograms", () => {
  assert.equal(Ipv6Packet.newChecked(SYN.subarray(0, 39)), "truncated");
  assert.equal(Ipv6Packet.newChecked(SYN.subarray(0, 79)), "truncated");
  const v4 = SYN.slice();
  v4[0] = 0x45;
  assert.equal(Ipv6Packet.newChecked(v4), "badVersion");
  const jumbo = WITH_EXTENSIONS.slice();
  jumbo[4] = 0;
  jumbo[5] = 0;
  assert.equal(Ipv6Packet.newChecked(jumbo), "badLength");
});

Deno.test("emitIpv6() rebuilds captured fixed headers byte for byte", () => {
  for (const captured of [SYN, WITH_EXTENSIONS]) {
    const repr = parseIpv6(checked(captured));
    const out = filled(ipv6BufferLen(repr));
    emitIpv6(repr, new Ipv6Packet(out));
    assert.deepEqual(out.subarray(0, 40), captured.subarray(0, 40));
    assert.ok(out.subarray(40).every((x) => x === 0xa5));
  }
});

const ipv6Repr: fc.Arbitrary<Ipv6Repr> = fc.record({
  src: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  dst: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  nextHeader: fc.nat({ max: 255 }),
  hopLimit: fc.nat({ max: 255 }),
  trafficClass: fc.nat({ max: 255 }),
  flowLabel: fc.nat({ max: 0xfffff }),
  payloadLen: fc.integer({ min: 1, max: 1500 }),
}).map((r) => ({ ...r }));

Deno.test("parseIpv6(emitIpv6(x)) equals x", () => {
  fc.assert(fc.property(ipv6Repr, (repr) => {
    const out = filled(ipv6BufferLen(repr));
    emitIpv6(repr, new Ipv6Packet(out));
    assert.deepEqual(parseIpv6(checked(out)), repr);
  }));
});

Deno.test("Ipv6Packet.newChecked() and findIpv6Transport() never throw on arbitrary bytes", () => {
  const headers = [0, 43, 44, 51, 60, 6, 17, 58, 50, 59];
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 40, maxLength: 200 }), fc.array(fc.constantFrom(...headers)), (b, chain) => {
      b[0] = 0x60;
      b[4] = 0;
      b[5] = Math.min(b[5]!, b.length - 40);
      b[6] = chain[0] ?? b[6]!;
      for (let i = 1, off = 40; i < chain.length && off < b.length; i++, off += 8) b[off] = chain[i]!;
      const p = Ipv6Packet.newChecked(b);
      if (typeof p === "string") return;
      const out = { protocol: 0, offset: 0 };
      if (findIpv6Transport(p, out) === null) assert.ok(out.offset <= 40 + p.payloadLen);
      void [parseIpv6(p), p.payload];
    }),
    { numRuns: 2000 },
  );
});
