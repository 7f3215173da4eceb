import assert from "node:assert/strict";
import fc from "fast-check";
import {
  flowKey,
  flowKeyV4,
  flowKeyV6,
  flowKeyV6At,
  formatPrefix,
  ipEquals,
  ipFromString,
  ipToString,
  ipv4FromString,
  ipv4ToString,
  ipv6FromString,
  ipv6ToString,
  networkOf,
  parseAddress,
  parseNetwork,
  parsePrefix,
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

Deno.test("parsePrefix() and parseNetwork() reject malformed CIDRs with the input quoted", () => {
  for (const bad of ["10.0.0/8", "10.0.0.0/33", "10.0.0.0/", "0x0a.0.0.0/8", "2001:db8::/129", "fe80::1%eth0/64", ""]) {
    assert.throws(() => parsePrefix(bad), (e: Error) => e instanceof SyntaxError && e.message.includes(`"${bad}"`));
  }
  assert.equal(formatPrefix(parsePrefix("198.18.0.1")), "198.18.0.1/32");
  assert.equal(formatPrefix(parsePrefix("2001:db8::1")), "2001:db8::1/128");
  assert.equal(formatPrefix(networkOf(parsePrefix("2001:db8:ffff::1/33"))), "2001:db8:8000::/33");
  assert.throws(() => parseNetwork("198.18.0.1/15"), /did you mean "198.18.0.0\/15"/);
});

Deno.test("parseAddress() gives an address's bytes, and ipToString() formats 4 or 16 of them", () => {
  assert.deepEqual(parseAddress("198.18.0.1"), { family: 4, address: Uint8Array.of(198, 18, 0, 1) });
  const v6 = parseAddress("2001:db8::1");
  assert.equal(v6.family, 6);
  assert.equal(ipToString(v6.address), "2001:db8::1");
  assert.equal(ipToString(Uint8Array.of(198, 18, 0, 1)), "198.18.0.1");
  assert.throws(() => parseAddress("198.18.0"), /Cannot parse IP address "198.18.0"/);
  assert.throws(() => ipToString(new Uint8Array(5)), RangeError);
});
