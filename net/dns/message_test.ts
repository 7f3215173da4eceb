import assert from "node:assert/strict";
import {
  emptyAnswer,
  encodeName,
  Flags,
  Rcode,
  readName,
  RrType,
  scanMessage,
  truncateAnswer,
  udpLimit,
} from "./message.ts";
import { CAPTURED_SRV, decode, query } from "./_test_util.ts";

Deno.test("scanMessage() reads the fields of a captured SRV answer", () => {
  const m = scanMessage(CAPTURED_SRV)!;
  assert.equal(m.id, 0x1234);
  assert.equal(m.flags & Flags.QR, Flags.QR);
  assert.equal(m.rcode, Rcode.NOERROR);
  assert.deepEqual(
    { ...m.question! },
    { name: "_http._tcp.echo.default.svc.cluster.local", type: RrType.SRV, class: 1, start: 12, end: 59 },
  );
  assert.deepEqual(m.records.map((r) => [r.section, r.name, r.type, r.ttl]), [
    ["answer", "_http._tcp.echo.default.svc.cluster.local", RrType.SRV, 0],
    ["additional", "echo.default.svc.cluster.local", RrType.A, 0],
    ["additional", "echo.default.svc.cluster.local", RrType.AAAA, 0],
  ]);
  assert.equal(m.opt, null);
  assert.equal(m.length, CAPTURED_SRV.length);
});

Deno.test("readName() lower-cases, escapes odd bytes and follows pointers backwards only", () => {
  const buf = Uint8Array.from([0, 0, 3, 0x41, 0x2e, 0x00, 1, 0x62, 0, 0xc0, 2]);
  assert.deepEqual(readName(buf, 2), { name: "a\\046\\000.b", end: 9 });
  assert.deepEqual(readName(buf, 9), { name: "a\\046\\000.b", end: 11 });
  // A pointer to itself and a forward pointer are refused.
  assert.equal(readName(Uint8Array.from([0xc0, 0]), 0), null);
  assert.equal(readName(Uint8Array.from([0xc0, 2, 0]), 0), null);
  // A label running past the end, and the obsolete 0x40 label type, are refused.
  assert.equal(readName(Uint8Array.from([5, 0x61]), 0), null);
  assert.equal(readName(Uint8Array.from([0x41, 0]), 0), null);
});

Deno.test("readName() gives a name's expanded wire bytes with case kept, and refuses in-place bytes past the limit", () => {
  const buf = Uint8Array.from([0, 0, 3, 0x41, 0x62, 0x63, 1, 0x64, 0, 1, 0x45, 0xc0, 2]);
  const wire: number[] = [];
  assert.deepEqual(readName(buf, 9, buf.length, wire), { name: "e.abc.d", end: 13 });
  assert.deepEqual(wire, [1, 0x45, 3, 0x41, 0x62, 0x63, 1, 0x64, 0]);
  // The pointer's second byte lies past the limit (the end of the record that holds the name).
  assert.equal(readName(buf, 9, 12), null);
  // A name over 255 bytes once expanded is refused.
  const long = Uint8Array.from([...Array(4).fill(0).flatMap(() => [63, ...Array(63).fill(0x61)]), 0]);
  assert.equal(readName(long, 0), null);
});

Deno.test("encodeName() is the inverse of readName() and refuses labels over 63 bytes", () => {
  for (const name of ["", "echo.default.svc.cluster.local", "a\\046\\000.b"]) {
    assert.equal(readName(encodeName(name), 0)!.name, name);
  }
  assert.throws(() => encodeName("a".repeat(64) + ".b"), RangeError);
  assert.throws(() => encodeName(Array(130).fill("ab").join(".")), /over 255 bytes/);
});

Deno.test("scanMessage() returns null for malformed messages", () => {
  const q = query("echo.default", "A");
  const bad: [string, Uint8Array][] = [
    ["shorter than a header", q.subarray(0, 11)],
    ["cut in the question", q.subarray(0, q.length - 1)],
    ["trailing bytes", Uint8Array.from([...q, 0])],
    ["a question count larger than the questions", Uint8Array.from([...q.subarray(0, 5), 2, ...q.subarray(6)])],
    ["an answer count with no answer", Uint8Array.from([...q.subarray(0, 7), 1, ...q.subarray(8)])],
    ["a record whose RDATA runs past the end", CAPTURED_SRV.subarray(0, CAPTURED_SRV.length - 3)],
  ];
  for (const [why, bytes] of bad) assert.equal(scanMessage(bytes), null, why);
});

Deno.test("scanMessage() finds the OPT record and udpLimit() honours it, never below 512", () => {
  const plain = scanMessage(query("x", "A"))!;
  assert.equal(udpLimit(plain), 512);
  const edns = scanMessage(query("x", "A", { udpSize: 4096, dnssecOk: true }))!;
  assert.equal(edns.opt?.udpSize, 4096);
  assert.equal(edns.opt?.dnssecOk, true);
  assert.equal(udpLimit(edns), 4096);
  assert.equal(udpLimit(scanMessage(query("x", "A", { udpSize: 100 }))!), 512);
});

Deno.test("emptyAnswer() answers SERVFAIL with the query's id, question and an OPT when the query had one", () => {
  for (
    const q of [query("echo.default", "AAAA", { id: 77 }), query("echo.default", "AAAA", { id: 77, udpSize: 1400 })]
  ) {
    const info = scanMessage(q)!;
    const a = emptyAnswer(q, info, Rcode.SERVFAIL);
    const p = decode(a);
    assert.equal(p.id, 77);
    assert.equal(p.rcode, "SERVFAIL");
    assert.equal(p.flag_qr, true);
    assert.equal(p.flag_rd, true);
    assert.deepEqual(p.questions, [{ name: "echo.default", type: "AAAA", class: "IN" }]);
    assert.equal(p.additionals!.length, info.opt ? 1 : 0);
  }
});

Deno.test("truncateAnswer() keeps header and question, sets TC and fits the limit", () => {
  const info = scanMessage(CAPTURED_SRV)!;
  assert.equal(truncateAnswer(CAPTURED_SRV, info, 512), CAPTURED_SRV);
  const t = truncateAnswer(CAPTURED_SRV, info, 100);
  assert.ok(t.length <= 100);
  const p = decode(t);
  assert.equal(p.flag_tc, true);
  assert.equal(p.id, 0x1234);
  assert.equal(p.answers!.length, 0);
  assert.equal(p.questions![0]!.name, "_http._tcp.echo.default.svc.cluster.local");
});
