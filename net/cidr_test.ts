import assert from "node:assert/strict";
import fc from "fast-check";
import {
  cidrHas,
  containsCidr,
  formatCidr,
  lastAddress,
  normalizeCidrs,
  overlaps,
  parseCidr,
  subtractCidrs,
} from "./cidr.ts";

Deno.test("parseCidr() reads IPv4 and IPv6 blocks and bare addresses", () => {
  assert.deepEqual(parseCidr("198.19.0.0/24"), { family: 4, base: 0xc6130000n, prefix: 24 });
  assert.equal(formatCidr(parseCidr("2001:db8:5::/112")), "2001:db8:5::/112");
  assert.equal(formatCidr(parseCidr("198.19.0.10")), "198.19.0.10/32");
  assert.equal(formatCidr(parseCidr("2001:db8::1")), "2001:db8::1/128");
});

Deno.test("parseCidr() rejects malformed text and host bits, quoting the value", () => {
  assert.throws(() => parseCidr("10.0.0/8"), /Cannot parse CIDR "10\.0\.0\/8"/);
  assert.throws(() => parseCidr("198.19.0.0/33"), /Cannot parse CIDR/);
  assert.throws(() => parseCidr("fish"), /Cannot parse CIDR "fish"/);
  assert.throws(() => parseCidr("198.19.0.1/24"), /host bits set; did you mean 198\.19\.0\.0\/24\?/);
  assert.equal(formatCidr(parseCidr("198.19.0.1/24", { loose: true })), "198.19.0.0/24");
});

Deno.test("containsCidr() and overlaps() follow prefix containment and never mix families", () => {
  const pods = parseCidr("198.19.128.0/20");
  assert.ok(containsCidr(pods, parseCidr("198.19.143.254")));
  assert.ok(!containsCidr(pods, parseCidr("198.19.144.0/24")));
  assert.ok(overlaps(parseCidr("198.19.0.0/16"), pods));
  assert.ok(!overlaps(parseCidr("0.0.0.0/0"), parseCidr("::/0")));
  assert.ok(cidrHas(pods, "198.19.130.1"));
  assert.equal(lastAddress(parseCidr("198.19.0.0/24")), 0xc61300ffn);
});

Deno.test("subtractCidrs() carves a hole and covers exactly what is left", () => {
  const left = subtractCidrs(parseCidr("198.19.0.0/24"), [parseCidr("198.19.0.128/26")]).map(formatCidr);
  assert.deepEqual(left, ["198.19.0.0/25", "198.19.0.192/26"]);
  assert.deepEqual(subtractCidrs(parseCidr("198.19.0.0/24"), [parseCidr("198.19.0.0/16")]), []);
  assert.deepEqual(subtractCidrs(parseCidr("198.19.0.0/24"), [parseCidr("2001:db8::/32")]).map(formatCidr), [
    "198.19.0.0/24",
  ]);
});

Deno.test("subtractCidrs() result holds an address exactly when the block does and no hole does", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 16, max: 28 }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 18, max: 32 })), { maxLength: 4 }),
      fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 20 }),
      (prefix, holeSpecs, probes) => {
        const mask = (n: number, p: number) => BigInt(n) & ~((1n << BigInt(32 - p)) - 1n) & 0xffffffffn;
        const from = { family: 4 as const, base: mask(0xc6130000, prefix), prefix };
        const holes = holeSpecs.map(([x, p]) => ({ family: 4 as const, base: mask(0xc6130000 | x, p), prefix: p }));
        const rest = subtractCidrs(from, holes);
        for (const x of probes) {
          const a = { family: 4 as const, base: BigInt(0xc6130000 | x), prefix: 32 };
          const want = containsCidr(from, a) && !holes.some((h) => containsCidr(h, a));
          assert.equal(rest.some((r) => containsCidr(r, a)), want);
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("normalizeCidrs() drops blocks inside others and sorts by family and address", () => {
  const n = normalizeCidrs(
    ["2001:db8::/32", "198.19.0.0/24", "198.19.0.0/16", "198.18.0.0/24"].map((s) => parseCidr(s)),
  );
  assert.deepEqual(n.map(formatCidr), ["198.18.0.0/24", "198.19.0.0/16", "2001:db8::/32"]);
});
