import assert from "node:assert/strict";
import fc from "fast-check";
import { pseudoHeaderSumV6 } from "./checksum.ts";
import { icmpBufferLen, IcmpMessage, type IcmpRepr, isIcmpError } from "./icmp.ts";
import { emitIcmpv4, Icmpv4Unreachable, parseIcmpv4 } from "./icmpv4.ts";
import { emitIcmpv6, Icmpv6Unreachable, parseIcmpv6 } from "./icmpv6.ts";
import { special, udp4, udp6 } from "./testdata/captured.ts";
import { at, filled } from "./testdata/hex.ts";

const ECHO4 = at(special, 0), REPLY4 = at(special, 1), ECHO6 = at(special, 2), REPLY6 = at(special, 3);
const QUERY4 = at(udp4, 0), UNREACH4 = at(udp4, 1), QUERY6 = at(udp6, 0), UNREACH6 = at(udp6, 1);

function message(packet: Uint8Array): IcmpMessage {
  const m = IcmpMessage.newChecked(packet.subarray(packet[0]! >> 4 === 4 ? (packet[0]! & 15) * 4 : 40));
  if (typeof m === "string") throw new Error(`unexpected drop ${m}`);
  return m;
}
function sum6(packet: Uint8Array): number {
  return pseudoHeaderSumV6(packet.subarray(8, 24), packet.subarray(24, 40), 58, packet.length - 40);
}
function repr4(packet: Uint8Array): IcmpRepr {
  const r = parseIcmpv4(message(packet));
  if (typeof r === "string") throw new Error(`unexpected drop ${r}`);
  return r;
}
function repr6(packet: Uint8Array): IcmpRepr {
  const r = parseIcmpv6(message(packet), sum6(packet));
  if (typeof r === "string") throw new Error(`unexpected drop ${r}`);
  return r;
}

Deno.test("parseIcmpv4() reads a captured echo request and the kernel's reply", () => {
  const rq = repr4(ECHO4), rp = repr4(REPLY4);
  assert.deepEqual(rq, {
    kind: "echoRequest",
    ident: 0x7470,
    seqNo: 1,
    data: new TextEncoder().encode("tp-wire-echo"),
  });
  assert.deepEqual(rp, { ...rq, kind: "echoReply" });
  assert.ok(!isIcmpError(rp));
});

Deno.test("parseIcmpv6() reads a captured echo request and reply, verifying the pseudo-header checksum", () => {
  const rq = repr6(ECHO6);
  assert.deepEqual(rq, {
    kind: "echoRequest",
    ident: 0x7470,
    seqNo: 1,
    data: new TextEncoder().encode("tp-wire-echo6"),
  });
  assert.deepEqual(repr6(REPLY6), { ...rq, kind: "echoReply" });
  const bad = ECHO6.slice();
  bad[bad.length - 1]! ^= 1;
  assert.equal(parseIcmpv6(message(bad), sum6(bad)), "badChecksum");
  assert.ok(typeof parseIcmpv6(message(bad), null) !== "string");
});

Deno.test("parseIcmpv4() reads a captured port unreachable quoting the whole UDP query", () => {
  const r = repr4(UNREACH4);
  assert.equal(r.kind, "destinationUnreachable");
  assert.ok(r.kind === "destinationUnreachable" && r.code === Icmpv4Unreachable.PORT);
  assert.deepEqual(r.data, QUERY4);
  assert.ok(isIcmpError(r));
});

Deno.test("parseIcmpv6() reads a captured port unreachable quoting the whole UDP query", () => {
  const r = repr6(UNREACH6);
  assert.ok(r.kind === "destinationUnreachable" && r.code === Icmpv6Unreachable.PORT);
  assert.deepEqual(r.data, QUERY6);
});

Deno.test("emitIcmpv4() and emitIcmpv6() rebuild captured messages byte for byte", () => {
  for (const p of [ECHO4, REPLY4, UNREACH4]) {
    const m = message(p);
    const out = filled(icmpBufferLen(repr4(p)));
    emitIcmpv4(repr4(p), new IcmpMessage(out));
    assert.deepEqual(out, m.buffer);
  }
  for (const p of [ECHO6, REPLY6, UNREACH6]) {
    const m = message(p);
    const out = filled(icmpBufferLen(repr6(p)));
    emitIcmpv6(repr6(p), new IcmpMessage(out), sum6(p));
    assert.deepEqual(out, m.buffer);
  }
});

Deno.test("parseIcmpv4() reads fragmentation-needed as packetTooBig with the next-hop MTU (RFC 1191)", () => {
  const out = filled(8 + 28);
  emitIcmpv4({ kind: "packetTooBig", mtu: 1400, data: QUERY4.subarray(0, 28) }, new IcmpMessage(out));
  assert.equal(out[1], Icmpv4Unreachable.FRAGMENTATION_NEEDED);
  assert.deepEqual(parseIcmpv4(new IcmpMessage(out)), {
    kind: "packetTooBig",
    mtu: 1400,
    data: QUERY4.subarray(0, 28),
  });
});

Deno.test("parseIcmpv4() and parseIcmpv6() name unmodelled types, and a short message is truncated", () => {
  const m = filled(8);
  m.set([13, 0, 0xf2, 0xff, 0, 0, 0, 0]); // timestamp request, checksum valid
  assert.equal(parseIcmpv4(new IcmpMessage(m)), "unsupportedIcmpType");
  m[0] = 135; // neighbour solicitation
  assert.equal(parseIcmpv6(new IcmpMessage(m), null), "unsupportedIcmpType");
  assert.equal(IcmpMessage.newChecked(m.subarray(0, 7)), "truncated");
});

const u16 = fc.nat({ max: 0xffff });
const data = fc.uint8Array({ maxLength: 100 });
const icmpRepr = (v4: boolean): fc.Arbitrary<IcmpRepr> =>
  fc.oneof(
    fc.record({ kind: fc.constantFrom("echoRequest" as const, "echoReply" as const), ident: u16, seqNo: u16, data }),
    fc.record({
      kind: fc.constant("destinationUnreachable" as const),
      code: fc.nat({ max: 255 }).filter((c) => !v4 || c !== 4),
      data,
    }),
    fc.record({ kind: fc.constant("packetTooBig" as const), mtu: v4 ? u16 : fc.nat({ max: 0xffffffff }), data }),
    fc.record({ kind: fc.constant("timeExceeded" as const), code: fc.nat({ max: 255 }), data }),
  ).map((r) => ({ ...r }) as IcmpRepr);

Deno.test("parseIcmpv4(emitIcmpv4(x)) equals x", () => {
  fc.assert(fc.property(icmpRepr(true), (repr) => {
    const out = filled(icmpBufferLen(repr));
    emitIcmpv4(repr, new IcmpMessage(out));
    assert.deepEqual(parseIcmpv4(new IcmpMessage(out)), repr);
  }));
});

Deno.test("parseIcmpv6(emitIcmpv6(x)) equals x", () => {
  fc.assert(fc.property(icmpRepr(false), u16, (repr, sum) => {
    const out = filled(icmpBufferLen(repr));
    emitIcmpv6(repr, new IcmpMessage(out), sum);
    assert.deepEqual(parseIcmpv6(new IcmpMessage(out), sum), repr);
  }));
});

Deno.test("IcmpMessage.newChecked() and the ICMP parsers never throw on arbitrary bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 30 }), (b) => {
      const m = IcmpMessage.newChecked(b);
      if (typeof m === "string") return;
      parseIcmpv4(m);
      parseIcmpv6(m, 0);
      parseIcmpv6(m, null);
    }),
    { numRuns: 2000 },
  );
});
