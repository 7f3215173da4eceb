import assert from "node:assert/strict";
import fc from "fast-check";
import { emitIpv4, ipv4BufferLen, ipv4HeaderLen, Ipv4Packet, type Ipv4Repr, parseIpv4 } from "./ipv4.ts";
import { special, tcp4 } from "./testdata/captured.ts";
import { at, filled } from "./testdata/hex.ts";

const SYN = at(tcp4, 0);
const WITH_OPTIONS = at(special, 4);
const FIRST_FRAGMENT = at(special, 8);
const LAST_FRAGMENT = at(special, 9);

function checked(b: Uint8Array): Ipv4Packet {
  const p = Ipv4Packet.newChecked(b);
  if (typeof p === "string") throw new Error(`unexpected drop ${p}`);
  return p;
}

Deno.test("Ipv4Packet reads every field of a captured SYN", () => {
  const p = checked(SYN);
  assert.equal(p.version, 4);
  assert.equal(p.headerLen, 20);
  assert.equal(p.tos, 0);
  assert.equal(p.totalLength, 60);
  assert.equal(p.ident, 0xe632);
  assert.equal(p.dontFragment, true);
  assert.equal(p.moreFragments, false);
  assert.equal(p.fragmentOffset, 0);
  assert.equal(p.ttl, 64);
  assert.equal(p.protocol, 6);
  assert.equal(p.checksum, 0xc862);
  assert.equal(p.src, 0xc6120001);
  assert.equal(p.dst, 0xc6120001);
  assert.equal(p.payload.length, 40);
  assert.ok(p.verifyChecksum());
});

Deno.test("parseIpv4() keeps the record-route option of a captured datagram", () => {
  const repr = parseIpv4(checked(WITH_OPTIONS));
  assert.ok(typeof repr !== "string");
  assert.equal(ipv4HeaderLen(repr), 32);
  assert.deepEqual(Array.from(repr.options.subarray(0, 3)), [7, 11, 8]); // type, length, pointer after one hop
  assert.equal(repr.payloadLen, 20);
  assert.equal(repr.protocol, 17);
});

Deno.test("emitIpv4() rebuilds captured headers byte for byte", () => {
  for (const captured of [SYN, WITH_OPTIONS]) {
    const repr = parseIpv4(checked(captured));
    assert.ok(typeof repr !== "string");
    const out = filled(ipv4BufferLen(repr));
    emitIpv4(repr, new Ipv4Packet(out));
    const hl = ipv4HeaderLen(repr);
    assert.deepEqual(out.subarray(0, hl), captured.subarray(0, hl));
    assert.ok(out.subarray(hl).every((x) => x === 0xa5));
  }
});

Deno.test("parseIpv4() refuses both fragments of a captured fragmented datagram", () => {
  const first = checked(FIRST_FRAGMENT), last = checked(LAST_FRAGMENT);
  assert.equal(first.moreFragments, true);
  assert.equal(first.fragmentOffset, 0);
  assert.equal(last.moreFragments, false);
  assert.equal(last.fragmentOffset, 1480);
  assert.equal(parseIpv4(first), "fragment");
  assert.equal(parseIpv4(last), "fragment");
});

Deno.test("parseIpv4() reports a bad header checksum unless told not to verify", () => {
  const b = SYN.slice();
  b[8] = 1;
  assert.equal(parseIpv4(checked(b)), "badChecksum");
  assert.ok(typeof parseIpv4(checked(b), { verifyChecksum: false }) !== "string");
});

Deno.test("Ipv4Packet.newChecked() rejects a header shorter than 20 bytes", () => {
  assert.equal(Ipv4Packet.newChecked(SYN.subarray(0, 19)), "truncated");
});

Deno.test("Ipv4Packet.newChecked() rejects a wrong version, IHL or total length", () => {
  const v6 = SYN.slice();
  v6[0] = 0x65;
  assert.equal(Ipv4Packet.newChecked(v6), "badVersion");
  const ihl = SYN.slice();
  ihl[0] = 0x44;
  assert.equal(Ipv4Packet.newChecked(ihl), "badHeaderLength");
  const longIhl = SYN.slice(0, 40);
  longIhl[0] = 0x4f;
  assert.equal(Ipv4Packet.newChecked(longIhl), "truncated");
  assert.equal(Ipv4Packet.newChecked(SYN.subarray(0, 59)), "truncated");
  const short = SYN.slice();
  short[3] = 19;
  assert.equal(Ipv4Packet.newChecked(short), "badLength");
});

Deno.test("Ipv4Packet.newChecked() ignores link padding after the total length", () => {
  const padded = new Uint8Array(SYN.length + 6);
  padded.set(SYN);
  assert.equal(checked(padded).payload.length, 40);
});

Deno.test("emitIpv4() refuses options that are not a multiple of 4 or longer than 40 bytes", () => {
  const repr = parseIpv4(checked(SYN));
  assert.ok(typeof repr !== "string");
  assert.throws(() => emitIpv4({ ...repr, options: new Uint8Array(3) }, new Ipv4Packet(filled(100))), RangeError);
  assert.throws(() => emitIpv4({ ...repr, options: new Uint8Array(44) }, new Ipv4Packet(filled(100))), RangeError);
  assert.throws(() => emitIpv4(repr, new Ipv4Packet(filled(10))), RangeError);
});

const u32 = fc.nat({ max: 0xffffffff });
const ipv4Repr: fc.Arbitrary<Ipv4Repr> = fc.record({
  src: u32,
  dst: u32,
  protocol: fc.nat({ max: 255 }),
  ttl: fc.nat({ max: 255 }),
  tos: fc.nat({ max: 255 }),
  ident: fc.nat({ max: 0xffff }),
  dontFragment: fc.boolean(),
  options: fc.nat({ max: 10 }).chain((n) => fc.uint8Array({ minLength: 4 * n, maxLength: 4 * n })),
  payloadLen: fc.nat({ max: 1000 }),
}).map((r) => ({ ...r })); // a plain object: fc.record's have a null prototype

Deno.test("parseIpv4(emitIpv4(x)) equals x", () => {
  fc.assert(fc.property(ipv4Repr, (repr) => {
    const out = filled(ipv4BufferLen(repr));
    emitIpv4(repr, new Ipv4Packet(out));
    assert.deepEqual(parseIpv4(checked(out)), repr);
  }));
});

Deno.test("Ipv4Packet.newChecked() and parseIpv4() never throw on arbitrary bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
      if (b.length > 0) b[0] = 0x40 | (b[0]! & 0x0f);
      const p = Ipv4Packet.newChecked(b);
      if (typeof p === "string") return;
      const repr = parseIpv4(p, { verifyChecksum: false });
      if (typeof repr !== "string") assert.ok(repr.options.length <= 40 && repr.payloadLen <= b.length);
      void [p.options, p.payload, p.src, p.dst, p.fragmentOffset];
    }),
    { numRuns: 2000 },
  );
});
