import assert from "node:assert/strict";
import fc from "fast-check";
import {
  flowKey,
  flowKeyV4,
  flowKeyV6,
  flowKeyV6At,
  ipEquals,
  ipFromString,
  ipToString,
  ipv4FromString,
  ipv4ToString,
  ipv6FromString,
  ipv6ToString,
} from "./address.ts";

Deno.test("ipv4FromString() reads a dotted quad as a uint32", () => {
  assert.equal(ipv4FromString("198.18.0.1"), 0xc6120001);
  assert.equal(ipv4FromString("255.255.255.255"), 0xffffffff);
  assert.equal(ipv4ToString(0xc6120001), "198.18.0.1");
});

Deno.test("ipv4FromString() rejects anything but a strict dotted quad", () => {
  for (const s of ["198.18.0", "198.18.0.256", "198.018.0.1", " 1.2.3.4", "1.2.3.4/8", "::1", ""]) {
    assert.throws(() => ipv4FromString(s), SyntaxError, s);
  }
});

Deno.test("ipv6FromString() and ipv6ToString() use 16 bytes and RFC 5952 text", () => {
  const a = ipv6FromString("2001:0DB8:0:0:0:0:0:1");
  assert.equal(a.length, 16);
  assert.equal(ipv6ToString(a), "2001:db8::1");
  assert.equal(ipv6ToString(ipv6FromString("::1")), "::1");
  assert.throws(() => ipv6FromString("2001:db8::1::2"), SyntaxError);
  assert.throws(() => ipv6FromString("fe80::1%eth0"), SyntaxError);
  assert.throws(() => ipv6ToString(new Uint8Array(4)), RangeError);
});

Deno.test("ipFromString() and ipToString() round-trip both families", () => {
  fc.assert(fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (s) => {
    const a = ipFromString(s);
    assert.ok(ipEquals(ipFromString(ipToString(a)), a));
  }));
});

Deno.test("flowKeyV4() differs for every field and between directions", () => {
  const k = flowKeyV4(1, 2, 3, 4, 6);
  assert.equal(k, flowKeyV4(1, 2, 3, 4, 6));
  for (
    const other of [
      flowKeyV4(9, 2, 3, 4, 6),
      flowKeyV4(1, 9, 3, 4, 6),
      flowKeyV4(1, 2, 9, 4, 6),
      flowKeyV4(1, 2, 3, 9, 6),
      flowKeyV4(1, 2, 3, 4, 17),
      flowKeyV4(3, 4, 1, 2, 6),
    ]
  ) {
    assert.notEqual(other, k);
  }
});

Deno.test("flowKeyV4() is injective on arbitrary 5-tuples", () => {
  const tuple = fc.tuple(
    fc.nat({ max: 0xffffffff }),
    fc.nat({ max: 0xffff }),
    fc.nat({ max: 0xffffffff }),
    fc.nat({ max: 0xffff }),
    fc.nat({ max: 255 }),
  );
  fc.assert(fc.property(tuple, tuple, (a, b) => {
    assert.equal(flowKeyV4(...a) === flowKeyV4(...b), a.every((x, i) => x === b[i]));
  }));
});

Deno.test("flowKeyV6At() reads the same key from addresses inside a packet", () => {
  const packet = new Uint8Array(40);
  packet.set(ipv6FromString("2001:db8::1"), 8);
  packet.set(ipv6FromString("2001:db8::2"), 24);
  const k = flowKeyV6(ipv6FromString("2001:db8::1"), 80, ipv6FromString("2001:db8::2"), 443, 6);
  assert.equal(flowKeyV6At(packet, 8, packet, 24, 80, 443, 6), k);
  assert.equal(flowKey(ipv6FromString("2001:db8::1"), 80, ipv6FromString("2001:db8::2"), 443, 6), k);
  assert.notEqual(k.length, flowKeyV4(1, 2, 3, 4, 6).length);
});

Deno.test("flowKey() refuses to mix an IPv4 and an IPv6 address", () => {
  assert.throws(() => flowKey(1, 1, new Uint8Array(16), 1, 6), TypeError);
  assert.throws(() => flowKey(new Uint8Array(16), 1, 1, 1, 6), TypeError);
});
