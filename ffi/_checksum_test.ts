import assert from "node:assert/strict";
import { checksum, fold, pseudoHeaderSum } from "./_checksum.ts";

// An IPv4 header from RFC 1071's worked example style: 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
const header = Uint8Array.from([
  0x45,
  0x00,
  0x00,
  0x73,
  0x00,
  0x00,
  0x40,
  0x00,
  0x40,
  0x11,
  0x00,
  0x00,
  0xc0,
  0xa8,
  0x00,
  0x01,
  0xc0,
  0xa8,
  0x00,
  0xc7,
]);

Deno.test("checksum() of an IPv4 header matches the known value 0xb861", () => {
  assert.equal(checksum(header, 0, 20), 0xb861);
});

Deno.test("checksum() handles odd lengths and data longer than 64 KiB", () => {
  assert.equal(checksum(Uint8Array.of(0x01), 0, 1), ~0x0100 & 0xffff);
  const big = new Uint8Array(200_000).fill(0xff);
  assert.equal(checksum(big, 0, big.length), 0);
});

Deno.test("pseudoHeaderSum() covers addresses, protocol and length", () => {
  // 192.168.0.1 -> 192.168.0.199, UDP, length 8: c0a8 + 0001 + c0a8 + 00c7 + 0011 + 0008
  assert.equal(fold(pseudoHeaderSum(header, 17, 8)), fold(0xc0a8 + 0x0001 + 0xc0a8 + 0x00c7 + 0x11 + 8));
});
