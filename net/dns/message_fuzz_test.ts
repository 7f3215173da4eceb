/**
 * Property tests: the DNS message scanner and the TCP deframer fed arbitrary and mutated bytes (issue 14). The
 * scanner never throws, answers null or offsets that lie inside the message, and what tp builds from a message it
 * accepted (an empty answer, a truncated one) scans again; the deframer never holds more than one message.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { emptyAnswer, HEADER_LEN, type MessageInfo, Rcode, readName, scanMessage, truncateAnswer } from "./message.ts";
import { TcpDeframer } from "./tcp_framing.ts";
import { CAPTURED_SRV, query } from "./_test_util.ts";
import { concat } from "../../base/bytes.ts";

const RUNS = Number(Deno.env.get("TP_FUZZ_RUNS") ?? 3000);

const SEEDS = [
  CAPTURED_SRV,
  query("api.dev.svc.cluster.local", "A", { udpSize: 1232, dnssecOk: true }),
  query("_http._tcp.echo.default", "SRV"),
  query("10.0.0.198.in-addr.arpa", "PTR", { id: 7 }),
];

/** Offsets the scanner returns stay inside the message, in order. */
function checkInfo(buf: Uint8Array, m: MessageInfo): void {
  assert.equal(m.length, buf.length);
  if (m.question) {
    assert.ok(HEADER_LEN <= m.question.start && m.question.start < m.question.end && m.question.end <= buf.length);
  }
  assert.ok(m.records.length <= (buf.length - HEADER_LEN) / 11, `${m.records.length} records`);
  for (const r of m.records) {
    assert.ok(r.start < r.ttlOffset && r.ttlOffset + 6 === r.rdataOffset && r.rdataOffset <= r.end);
    assert.ok(r.end <= buf.length);
  }
  if (m.opt) assert.ok(m.opt.start < m.opt.end && m.opt.end <= buf.length);
}

/** Scans `buf`; what tp would build from an accepted message scans again. */
function scanAndRebuild(buf: Uint8Array): void {
  const m = scanMessage(buf);
  if (!m) return;
  checkInfo(buf, m);
  const empty = emptyAnswer(buf, m, Rcode.SERVFAIL);
  assert.ok(scanMessage(empty), "an empty answer built from an accepted message scans");
  const cut = truncateAnswer(buf, m, HEADER_LEN);
  assert.ok(scanMessage(cut), "a truncated answer built from an accepted message scans");
}

const mutation = fc.tuple(
  fc.constantFrom("flip", "cut", "insert", "count"),
  fc.double({ min: 0, max: 1, maxExcluded: true }),
  fc.nat(0xff),
);

function mutate(seed: Uint8Array, ms: [string, number, number][]): Uint8Array {
  let b = seed.slice();
  for (const [kind, where, v] of ms) {
    const i = Math.floor(where * b.length);
    if (kind === "flip") b[i] = (b[i] ?? 0) ^ (v || 1);
    else if (kind === "cut") b = b.slice(0, i);
    else if (kind === "insert") b = concat([b.subarray(0, i), Uint8Array.of(v), b.subarray(i)]);
    else if (b.length >= HEADER_LEN) b[4 + 2 * (v % 4) + 1] = v; // a section count
  }
  return b;
}

Deno.test("scanMessage() never throws on arbitrary bytes, and its offsets lie inside the message", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (b) => scanAndRebuild(b)),
    { numRuns: RUNS },
  );
});

Deno.test("scanMessage() on mutated real messages: null or consistent, and tp's answers built from them scan", () => {
  fc.assert(
    fc.property(fc.constantFrom(...SEEDS), fc.array(mutation, { minLength: 1, maxLength: 4 }), (seed, ms) => {
      scanAndRebuild(mutate(seed, ms));
    }),
    { numRuns: RUNS },
  );
});

Deno.test("readName() never throws from any offset, and its end lies inside the buffer", () => {
  fc.assert(
    fc.property(fc.constantFrom(...SEEDS), fc.array(mutation, { maxLength: 3 }), fc.nat(), (seed, ms, at) => {
      const b = mutate(seed, ms);
      const wire: number[] = [];
      const n = readName(b, b.length ? at % b.length : 0, b.length, wire);
      if (n) {
        assert.ok(n.end <= b.length);
        assert.ok(wire.length <= 255, `${wire.length} wire bytes`);
      }
    }),
    { numRuns: RUNS },
  );
});

Deno.test("TcpDeframer holds at most one unfinished message, whatever the chunks", () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 40 }), (chunks) => {
      const d = new TcpDeframer();
      for (const c of chunks) {
        for (const m of d.push(c)) assert.ok(m.length >= 1 && m.length <= 0xffff);
        assert.ok(d.buffered <= 2 + 0xffff, `${d.buffered} bytes held`);
      }
    }),
    { numRuns: RUNS / 3 },
  );
});
