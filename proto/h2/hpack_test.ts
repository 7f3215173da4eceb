import assert from "node:assert/strict";
import fc from "fast-check";
import { type HeaderList, HpackDecoder, HpackEncoder, HpackError, huffmanDecode, huffmanEncode } from "./hpack.ts";

/** Hex to bytes; spaces and newlines are ignored so that the RFC's dumps can be pasted as they are. */
function hex(s: string): Uint8Array {
  const t = s.replace(/\s+/g, "");
  if (t.length % 2 !== 0 || !/^[0-9a-f]*$/.test(t)) throw new SyntaxError(`Cannot parse hex "${t.slice(0, 20)}..."`);
  const b = new Uint8Array(t.length / 2);
  for (let i = 0; i < b.length; i++) b[i] = parseInt(t.slice(2 * i, 2 * i + 2), 16);
  return b;
}

function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

const ascii = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** An integer with an N-bit prefix (RFC 7541 section 5.1), written independently of hpack.ts. */
function int(value: number, prefixBits: number, flags: number): number[] {
  const max = 2 ** prefixBits - 1;
  if (value < max) return [flags | value];
  const out = [flags | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** The dynamic table, newest first, read through indexed representations (which leave it unchanged). */
function dynamicTable(d: HpackDecoder): HeaderList {
  const out: HeaderList = [];
  for (let index = 62;; index++) {
    try {
      out.push(...d.decode(Uint8Array.from(int(index, 7, 0x80))));
    } catch (e) {
      assert.ok(e instanceof HpackError);
      return out;
    }
  }
}

function assertHpackError(d: HpackDecoder, block: string | Uint8Array, message?: RegExp): void {
  assert.throws(() => d.decode(typeof block === "string" ? hex(block) : block), (e) => {
    assert.ok(e instanceof HpackError, `expected HpackError, got ${e}`);
    if (message) assert.match(e.message, message);
    return true;
  });
}

// --- RFC 7541 Appendix C.2: header field representations ---

Deno.test("decode() reads a literal with incremental indexing and a new name (RFC 7541 C.2.1)", () => {
  const d = new HpackDecoder();
  const block = hex(`400a 6375 7374 6f6d 2d6b 6579 0d63 7573
                     746f 6d2d 6865 6164 6572`);
  assert.deepEqual(d.decode(block), [["custom-key", "custom-header"]]);
  assert.equal(d.dynamicTableSize, 55);
  assert.deepEqual(dynamicTable(d), [["custom-key", "custom-header"]]);
});

Deno.test("decode() reads a literal without indexing with an indexed name (RFC 7541 C.2.2)", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("040c 2f73 616d 706c 652f 7061 7468")), [[":path", "/sample/path"]]);
  assert.equal(d.dynamicTableSize, 0);
});

Deno.test("decode() reads a literal never indexed with a new name (RFC 7541 C.2.3)", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("1008 7061 7373 776f 7264 0673 6563 7265 74")), [["password", "secret"]]);
  assert.equal(d.dynamicTableSize, 0);
});

Deno.test("decode() reads an indexed field from the static table (RFC 7541 C.2.4)", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("82")), [[":method", "GET"]]);
  assert.equal(d.dynamicTableSize, 0);
});

// --- RFC 7541 Appendix C.3 to C.6: sequences on one connection ---

const REQUEST1: HeaderList = [
  [":method", "GET"],
  [":scheme", "http"],
  [":path", "/"],
  [":authority", "www.example.com"],
];
const REQUEST2: HeaderList = [...REQUEST1, ["cache-control", "no-cache"]];
const REQUEST3: HeaderList = [
  [":method", "GET"],
  [":scheme", "https"],
  [":path", "/index.html"],
  [":authority", "www.example.com"],
  ["custom-key", "custom-value"],
];
const TABLE_AFTER_REQUEST3: HeaderList = [
  ["custom-key", "custom-value"],
  ["cache-control", "no-cache"],
  [":authority", "www.example.com"],
];

function checkRequests(blocks: string[]): void {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex(blocks[0]!)), REQUEST1);
  assert.equal(d.dynamicTableSize, 57);
  assert.deepEqual(dynamicTable(d), [[":authority", "www.example.com"]]);
  assert.deepEqual(d.decode(hex(blocks[1]!)), REQUEST2);
  assert.equal(d.dynamicTableSize, 110);
  assert.deepEqual(dynamicTable(d), [["cache-control", "no-cache"], [":authority", "www.example.com"]]);
  assert.deepEqual(d.decode(hex(blocks[2]!)), REQUEST3);
  assert.equal(d.dynamicTableSize, 164);
  assert.deepEqual(dynamicTable(d), TABLE_AFTER_REQUEST3);
}

Deno.test("decode() reads three requests without Huffman coding on one connection (RFC 7541 C.3)", () => {
  checkRequests([
    `8286 8441 0f77 7777 2e65 7861 6d70 6c65
     2e63 6f6d`,
    "8286 84be 5808 6e6f 2d63 6163 6865",
    `8287 85bf 400a 6375 7374 6f6d 2d6b 6579
     0c63 7573 746f 6d2d 7661 6c75 65`,
  ]);
});

Deno.test("decode() reads three requests with Huffman coding on one connection (RFC 7541 C.4)", () => {
  checkRequests([
    `8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4
     ff`,
    "8286 84be 5886 a8eb 1064 9cbf",
    `8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925
     a849 e95b b8e8 b4bf`,
  ]);
});

const DATE1 = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2 = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION = "https://www.example.com";
const COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";
const RESPONSE1: HeaderList = [
  [":status", "302"],
  ["cache-control", "private"],
  ["date", DATE1],
  ["location", LOCATION],
];
const RESPONSE2: HeaderList = [[":status", "307"], ...RESPONSE1.slice(1)];
const RESPONSE3: HeaderList = [
  [":status", "200"],
  ["cache-control", "private"],
  ["date", DATE2],
  ["location", LOCATION],
  ["content-encoding", "gzip"],
  ["set-cookie", COOKIE],
];

function checkResponses(blocks: string[]): void {
  const d = new HpackDecoder(256);
  assert.deepEqual(d.decode(hex(blocks[0]!)), RESPONSE1);
  assert.equal(d.dynamicTableSize, 222);
  assert.deepEqual(dynamicTable(d), [
    ["location", LOCATION],
    ["date", DATE1],
    ["cache-control", "private"],
    [":status", "302"],
  ]);
  // (":status", "302") is evicted to make room for (":status", "307").
  assert.deepEqual(d.decode(hex(blocks[1]!)), RESPONSE2);
  assert.equal(d.dynamicTableSize, 222);
  assert.deepEqual(dynamicTable(d), [
    [":status", "307"],
    ["location", LOCATION],
    ["date", DATE1],
    ["cache-control", "private"],
  ]);
  // Several entries are evicted while this block is decoded.
  assert.deepEqual(d.decode(hex(blocks[2]!)), RESPONSE3);
  assert.equal(d.dynamicTableSize, 215);
  assert.deepEqual(dynamicTable(d), [["set-cookie", COOKIE], ["content-encoding", "gzip"], ["date", DATE2]]);
}

Deno.test("decode() reads three responses without Huffman coding, with evictions (RFC 7541 C.5)", () => {
  checkResponses([
    `4803 3330 3258 0770 7269 7661 7465 611d
     4d6f 6e2c 2032 3120 4f63 7420 3230 3133
     2032 303a 3133 3a32 3120 474d 546e 1768
     7474 7073 3a2f 2f77 7777 2e65 7861 6d70
     6c65 2e63 6f6d`,
    "4803 3330 37c1 c0bf",
    `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420
     3230 3133 2032 303a 3133 3a32 3220 474d
     54c0 5a04 677a 6970 7738 666f 6f3d 4153
     444a 4b48 514b 425a 584f 5157 454f 5049
     5541 5851 5745 4f49 553b 206d 6178 2d61
     6765 3d33 3630 303b 2076 6572 7369 6f6e
     3d31`,
  ]);
});

Deno.test("decode() reads three responses with Huffman coding, with evictions (RFC 7541 C.6)", () => {
  checkResponses([
    `4882 6402 5885 aec3 771a 4b61 96d0 7abe
     9410 54d4 44a8 2005 9504 0b81 66e0 82a6
     2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8
     e9ae 82ae 43d3`,
    "4883 640e ffc1 c0bf",
    `88c1 6196 d07a be94 1054 d444 a820 0595
     040b 8166 e084 a62d 1bff c05a 839b d9ab
     77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b
     3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
     9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
  ]);
});

// --- Dynamic table ---

Deno.test("decode() takes a literal's name from the dynamic table, even from the entry its insert evicts", () => {
  const d = new HpackDecoder();
  d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
  assert.deepEqual(d.decode(hex("7e 03 666f6f")), [["custom-key", "foo"]]);
  assert.equal(d.dynamicTableSize, 55 + 45);
  assert.deepEqual(d.decode(hex("0f2f 03 626172")), [["custom-key", "bar"]], "index 62 + ... with a 4-bit prefix");

  // RFC 7541 section 4.4: the name is read before the entry it comes from is evicted.
  const small = new HpackDecoder(60);
  small.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
  assert.deepEqual(small.decode(hex("7e 03 666f6f")), [["custom-key", "foo"]]);
  assert.deepEqual(dynamicTable(small), [["custom-key", "foo"]]);
  assert.equal(small.dynamicTableSize, 45);
});

Deno.test("decode() empties the table for an entry larger than it, and still returns the field", () => {
  const d = new HpackDecoder(100);
  d.decode(hex("4001 61 0162 4001 63 0164")); // a: b, c: d (34 octets each)
  assert.deepEqual(dynamicTable(d), [["c", "d"], ["a", "b"]]);
  assert.equal(d.dynamicTableSize, 68);
  const big = "x".repeat(70);
  assert.deepEqual(d.decode(Uint8Array.from([0x40, 1, 0x65, 70, ...ascii(big)])), [["e", big]]);
  assert.equal(d.dynamicTableSize, 0);
  assertHpackError(d, "be", /index 62 out of range/);
});

Deno.test("decode() applies size updates at the start of a block, evicting down to the new size", () => {
  const d = new HpackDecoder();
  d.decode(hex("4001 61 0162 4001 63 0164"));
  assert.deepEqual(d.decode(hex("3f09 82")), [[":method", "GET"]], "size update to 40, then a field");
  assert.deepEqual(dynamicTable(d), [["c", "d"]]);
  assert.deepEqual(d.decode(hex("4001 65 0166")), [["e", "f"]]);
  assert.deepEqual(dynamicTable(d), [["e", "f"]], "the new limit of 40 evicts c: d");
  assert.deepEqual(d.decode(hex("20 3fe11f")), [], "two updates in a row: to 0, then back to 4096");
  assert.equal(d.dynamicTableSize, 0);
  d.decode(hex("4001 61 0162 4001 63 0164"));
  assert.equal(d.dynamicTableSize, 68);
  d.decode(hex("20"));
  d.decode(hex("4001 61 0162"));
  assert.equal(d.dynamicTableSize, 0, "a table of size 0 keeps nothing");
});

Deno.test("decode() counts entry sizes in octets, not UTF-16 units, including invalid UTF-8", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("4001 78 02c3a9")), [["x", "é"]]);
  assert.equal(d.dynamicTableSize, 1 + 2 + 32);
  assert.deepEqual(d.decode(hex("4001 79 01ff")), [["y", "\ufffd"]], "invalid UTF-8 is replaced, not rejected");
  assert.equal(d.dynamicTableSize, 35 + 1 + 1 + 32);
  assert.deepEqual(d.decode(hex("7f00 01 7a")), [["x", "z"]], "name octets of a dynamic entry");
  assert.equal(d.dynamicTableSize, 69 + 1 + 1 + 32);
});

Deno.test("decode() keeps many entries in order as the table grows", () => {
  const d = new HpackDecoder();
  const blocks: number[] = [];
  for (let i = 0; i < 100; i++) blocks.push(0x40, 1, 0x6b, 2, 0x30 + Math.floor(i / 10), 0x30 + (i % 10));
  d.decode(Uint8Array.from(blocks));
  assert.equal(d.dynamicTableSize, 100 * 35);
  const table = dynamicTable(d);
  assert.equal(table.length, 100);
  assert.deepEqual(table[0], ["k", "99"]);
  assert.deepEqual(table[99], ["k", "00"]);
  // 733 octets: 3500 + 733 > 4096, so the 4 oldest go.
  d.decode(Uint8Array.from([0x40, 1, 0x6b, ...int(700, 7, 0), ...ascii("v".repeat(700))]));
  assert.equal(d.dynamicTableSize, 96 * 35 + 733);
  assert.deepEqual(dynamicTable(d).at(-1), ["k", "04"]);
});

// --- Malformed blocks ---

Deno.test("decode() rejects index 0 and indexes past the tables", () => {
  assertHpackError(new HpackDecoder(), "80", /index 0/);
  assertHpackError(new HpackDecoder(), "be", /index 62 out of range/);
  assertHpackError(new HpackDecoder(), "7e 0161", /index 62 out of range/);
  assertHpackError(new HpackDecoder(), "0f30 0161", /index 63 out of range/);
  assertHpackError(new HpackDecoder(), "1f30 0161", /index 63 out of range/);
  const d = new HpackDecoder();
  d.decode(hex("4001 61 0162"));
  assert.deepEqual(d.decode(hex("be")), [["a", "b"]]);
  assertHpackError(d, "bf", /index 63 out of range/);
});

Deno.test("decode() rejects a size update above our limit, or after a header field", () => {
  assert.deepEqual(new HpackDecoder().decode(hex("3fe11f")), [], "4096 is allowed");
  assertHpackError(new HpackDecoder(), "3fe21f", /4097 exceeds the limit 4096/);
  assertHpackError(new HpackDecoder(256), "3fe201", /257 exceeds the limit 256/);
  assertHpackError(new HpackDecoder(), "82 20", /after a header field/);
  assertHpackError(new HpackDecoder(), "4001 61 0162 3f09", /after a header field/);
});

Deno.test("decode() accepts integers up to 2^31 - 1 and rejects larger ones or over-long encodings", () => {
  const d = new HpackDecoder(0x7fffffff);
  assert.deepEqual(d.decode(Uint8Array.from(int(0x7fffffff, 5, 0x20))), []);
  assert.equal(int(0x7fffffff, 5, 0x20).length, 6, "5 continuation octets");
  assertHpackError(d, Uint8Array.from(int(0x80000000, 5, 0x20)), /exceeds/);
  assertHpackError(d, Uint8Array.from(int(2 ** 40, 7, 0x80)), /exceeds/);
  assertHpackError(d, "3f 8080 8080 8000", /more than 5 continuation octets/);
  assert.deepEqual(d.decode(hex("3f 8080 8080 00")), [], "zero padding within 5 octets is still an integer");
});

Deno.test("decode() rejects truncated blocks", () => {
  for (const block of ["ff", "ff80", "3f", "04", "40", "4001", "4001 61", "0005 61", "0001 61 02 62", "4080"]) {
    assertHpackError(new HpackDecoder(), block);
  }
});

Deno.test("decode() rejects Huffman padding longer than 7 bits or not all ones, and EOS in a string", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("0481 1f")), [[":path", "a"]], "a = 00011, then 3 bits of padding");
  assert.deepEqual(d.decode(hex("0480")), [[":path", ""]], "an empty Huffman string");
  assertHpackError(d, "0482 1fff", /padding/);
  assertHpackError(d, "0481 ff", /padding/);
  assertHpackError(d, "0481 18", /padding/);
  assertHpackError(d, "0481 1e", /padding/);
  assertHpackError(d, "0484 ffff ffff", /EOS/);
  assertHpackError(d, "0485 1fff ffff fc", /EOS/);
  assertHpackError(d, "0085 ffff ffff 00 0161", /EOS/);
});

Deno.test("decode() rejects a header list larger than maxHeaderListSize", () => {
  const d = new HpackDecoder();
  assert.equal(d.maxHeaderListSize, 64 * 1024);
  d.maxHeaderListSize = 100;
  assert.equal(d.decode(hex("8282")).length, 2, ":method GET is 42 octets");
  assertHpackError(d, "828282", /exceeds 100 octets/);
});

Deno.test("decode() throws only HpackError on random bytes", () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 4 }), (blocks) => {
      const d = new HpackDecoder(256);
      for (const b of blocks) {
        try {
          d.decode(b);
        } catch (e) {
          if (!(e instanceof HpackError)) throw e;
        }
      }
    }),
    { numRuns: 2000 },
  );
});

// --- Huffman code ---

/** RFC 7541 Appendix B, "code as hex" and "len" columns, symbols 0..255 then EOS. */
const APPENDIX_B = `
  1ff8:13 7fffd8:23 fffffe2:28 fffffe3:28 fffffe4:28 fffffe5:28 fffffe6:28 fffffe7:28
  fffffe8:28 ffffea:24 3ffffffc:30 fffffe9:28 fffffea:28 3ffffffd:30 fffffeb:28 fffffec:28
  fffffed:28 fffffee:28 fffffef:28 ffffff0:28 ffffff1:28 ffffff2:28 3ffffffe:30 ffffff3:28
  ffffff4:28 ffffff5:28 ffffff6:28 ffffff7:28 ffffff8:28 ffffff9:28 ffffffa:28 ffffffb:28
  14:6 3f8:10 3f9:10 ffa:12 1ff9:13 15:6 f8:8 7fa:11 3fa:10 3fb:10 f9:8 7fb:11 fa:8 16:6 17:6 18:6
  0:5 1:5 2:5 19:6 1a:6 1b:6 1c:6 1d:6 1e:6 1f:6 5c:7 fb:8 7ffc:15 20:6 ffb:12 3fc:10
  1ffa:13 21:6 5d:7 5e:7 5f:7 60:7 61:7 62:7 63:7 64:7 65:7 66:7 67:7 68:7 69:7 6a:7
  6b:7 6c:7 6d:7 6e:7 6f:7 70:7 71:7 72:7 fc:8 73:7 fd:8 1ffb:13 7fff0:19 1ffc:13 3ffc:14 22:6
  7ffd:15 3:5 23:6 4:5 24:6 5:5 25:6 26:6 27:6 6:5 74:7 75:7 28:6 29:6 2a:6 7:5
  2b:6 76:7 2c:6 8:5 9:5 2d:6 77:7 78:7 79:7 7a:7 7b:7 7ffe:15 7fc:11 3ffd:14 1ffd:13 ffffffc:28
  fffe6:20 3fffd2:22 fffe7:20 fffe8:20 3fffd3:22 3fffd4:22 3fffd5:22 7fffd9:23
  3fffd6:22 7fffda:23 7fffdb:23 7fffdc:23 7fffdd:23 7fffde:23 ffffeb:24 7fffdf:23
  ffffec:24 ffffed:24 3fffd7:22 7fffe0:23 ffffee:24 7fffe1:23 7fffe2:23 7fffe3:23
  7fffe4:23 1fffdc:21 3fffd8:22 7fffe5:23 3fffd9:22 7fffe6:23 7fffe7:23 ffffef:24
  3fffda:22 1fffdd:21 fffe9:20 3fffdb:22 3fffdc:22 7fffe8:23 7fffe9:23 1fffde:21
  7fffea:23 3fffdd:22 3fffde:22 fffff0:24 1fffdf:21 3fffdf:22 7fffeb:23 7fffec:23
  1fffe0:21 1fffe1:21 3fffe0:22 1fffe2:21 7fffed:23 3fffe1:22 7fffee:23 7fffef:23
  fffea:20 3fffe2:22 3fffe3:22 3fffe4:22 7ffff0:23 3fffe5:22 3fffe6:22 7ffff1:23
  3ffffe0:26 3ffffe1:26 fffeb:20 7fff1:19 3fffe7:22 7ffff2:23 3fffe8:22 1ffffec:25
  3ffffe2:26 3ffffe3:26 3ffffe4:26 7ffffde:27 7ffffdf:27 3ffffe5:26 fffff1:24 1ffffed:25
  7fff2:19 1fffe3:21 3ffffe6:26 7ffffe0:27 7ffffe1:27 3ffffe7:26 7ffffe2:27 fffff2:24
  1fffe4:21 1fffe5:21 3ffffe8:26 3ffffe9:26 ffffffd:28 7ffffe3:27 7ffffe4:27 7ffffe5:27
  fffec:20 fffff3:24 fffed:20 1fffe6:21 3fffe9:22 1fffe7:21 1fffe8:21 7ffff3:23
  3fffea:22 3fffeb:22 1ffffee:25 1ffffef:25 fffff4:24 fffff5:24 3ffffea:26 7ffff4:23
  3ffffeb:26 7ffffe6:27 3ffffec:26 3ffffed:26 7ffffe7:27 7ffffe8:27 7ffffe9:27 7ffffea:27
  7ffffeb:27 ffffffe:28 7ffffec:27 7ffffed:27 7ffffee:27 7ffffef:27 7fffff0:27 3ffffee:26
  3fffffff:30`.trim().split(/\s+/).map((s) => {
  const [code, len] = s.split(":");
  return { code: BigInt(`0x${code}`), len: Number(len) };
});

Deno.test("huffmanEncode() uses the code of every symbol in RFC 7541 Appendix B", () => {
  assert.equal(APPENDIX_B.length, 257);
  for (let sym = 0; sym < 256; sym++) {
    const { code, len } = APPENDIX_B[sym]!;
    // The symbol, then "0" (00000) to pin its length, then padding to the octet boundary with ones.
    const bits = len + 5;
    const pad = (8 - (bits % 8)) % 8;
    const value = (((code << 5n) | 0n) << BigInt(pad)) | ((1n << BigInt(pad)) - 1n);
    const expected = value.toString(16).padStart(((bits + pad) / 8) * 2, "0");
    assert.equal(toHex(huffmanEncode(Uint8Array.of(sym, 0x30))), expected, `symbol ${sym}`);
  }
  const eos = APPENDIX_B[256]!;
  assert.deepEqual(eos, { code: 2n ** 30n - 1n, len: 30 }, "EOS is 30 ones: padding is a prefix of it");
});

Deno.test("huffmanDecode(huffmanEncode(x)) is x for every byte value", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(huffmanDecode(huffmanEncode(all)), all);
  const reversed = all.slice().reverse();
  assert.deepEqual(huffmanDecode(huffmanEncode(reversed)), reversed);
  for (let b = 0; b < 256; b++) assert.deepEqual(huffmanDecode(huffmanEncode(Uint8Array.of(b))), Uint8Array.of(b));
  fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), (x) => {
    assert.deepEqual(huffmanDecode(huffmanEncode(x)), x);
  }));
});

Deno.test("huffmanEncode() and huffmanDecode() match the Huffman strings of RFC 7541 C.4 and C.6", () => {
  const examples: [string, string][] = [
    ["www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"],
    ["no-cache", "a8eb 1064 9cbf"],
    ["custom-key", "25a8 49e9 5ba9 7d7f"],
    ["custom-value", "25a8 49e9 5bb8 e8b4 bf"],
    ["302", "6402"],
    ["307", "640e ff"],
    ["private", "aec3 771a 4b"],
    [DATE1, "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"],
    [DATE2, "d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff"],
    [LOCATION, "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"],
    ["gzip", "9bd9 ab"],
    [
      COOKIE,
      `94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587
              3160 65c0 03ed 4ee5 b106 3d50 07`,
    ],
    ["", ""],
  ];
  for (const [s, h] of examples) {
    assert.equal(text(huffmanDecode(hex(h))), s);
    assert.deepEqual(huffmanEncode(ascii(s)), hex(h), s);
  }
});

// --- Encoder ---

Deno.test("encode() indexes full static matches and sends other fields as literals without indexing", () => {
  const e = new HpackEncoder();
  const cases: [HeaderList, string][] = [
    [[[":method", "GET"], [":scheme", "http"], [":path", "/"]], "828684"],
    [[[":status", "200"], [":authority", ""], ["accept", ""], ["www-authenticate", ""]], "88 81 93 bd"],
    [[[":authority", "www.example.com"]], "01 8cf1e3c2e5f23a6ba0ab90f4ff"],
    [[["cache-control", "no-cache"]], "0f09 86a8eb10649cbf"],
    [[[":status", "302"]], "08 826402"],
    [[["date", DATE1]], "0f12 96d07abe941054d444a8200595040b8166e082a62d1bff"],
    [[["location", LOCATION]], "0f1f 919d29ad171863c78f0b97c8e9ae82ae43d3"],
    [[["custom-key", "custom-value"]], "00 8825a849e95ba97d7f 8925a849e95bb8e8b4bf"],
    [[[":path", ""]], "0400"],
    [[["x-a", "{}"]], "00 03782d61 027b7d"], // Huffman is not shorter for either: raw
    [[], ""],
  ];
  for (const [headers, expected] of cases) assert.equal(toHex(e.encode(headers)), toHex(hex(expected)));
});

Deno.test("encode() sends authorization, cookie and proxy-authorization as never indexed", () => {
  const e = new HpackEncoder();
  const headers: HeaderList = [["authorization", "{}"], ["cookie", "{}"], ["proxy-authorization", "{}"]];
  assert.equal(toHex(e.encode(headers)), "1f08027b7d" + "1f11027b7d" + "1f22027b7d");
  assert.deepEqual(new HpackDecoder().decode(hex("1f11 8264 02")), [["cookie", "302"]]);
});

Deno.test("encode() writes multi-octet lengths and UTF-8 values", () => {
  const e = new HpackEncoder();
  const long = "{".repeat(200); // 15 bits per "{" in Huffman: raw is shorter
  assert.equal(toHex(e.encode([[":path", long]])), "04" + "7f49" + "7b".repeat(200));
  assert.equal(toHex(e.encode([["x", "é"]])), "000178" + "02c3a9");
  const huge: HeaderList = [["x-big", "a".repeat(70_000)], ["x-emoji", "🙂".repeat(300)]];
  const d = new HpackDecoder();
  d.maxHeaderListSize = 1 << 20;
  assert.deepEqual(d.decode(e.encode(huge)), huge);
});

const headerName = fc.oneof(
  fc.constantFrom(":method", ":path", ":status", "cookie", "authorization", "proxy-authorization", "accept", "via"),
  fc.stringMatching(/^[a-z0-9-]{1,24}$/),
  fc.string({ unit: "binary", maxLength: 20 }),
);
const headerValue = fc.oneof(
  fc.constantFrom("", "GET", "/", "/index.html", "200", "gzip, deflate", "https"),
  fc.string({ maxLength: 300 }),
  fc.string({ unit: "binary", maxLength: 60 }),
);
const headerList: fc.Arbitrary<HeaderList> = fc.array(fc.tuple(headerName, headerValue), { maxLength: 20 });

Deno.test("decode(encode(x)) equals x, and leaves the decoder's table empty", () => {
  const e = new HpackEncoder();
  const d = new HpackDecoder();
  fc.assert(
    fc.property(headerList, (headers) => {
      assert.deepEqual(d.decode(e.encode(headers)), headers);
      assert.equal(d.dynamicTableSize, 0);
    }),
    { numRuns: 500 },
  );
});
