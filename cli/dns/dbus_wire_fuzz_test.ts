/**
 * Property tests: the D-Bus decoder fed arbitrary and mutated messages (issue 14). Whatever arrives, parseMessage
 * and unmarshal throw nothing but their documented SyntaxError, and what they return is no bigger than the bytes.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { DBusVariant, emitMessage, MessageType, parseMessage, unmarshal } from "./dbus_wire.ts";
import { concat } from "../../base/bytes.ts";

const RUNS = Number(Deno.env.get("TP_FUZZ_RUNS") ?? 2000);

const RESOLVE1 = { path: "/org/freedesktop/resolve1", interface: "org.freedesktop.resolve1.Manager" };

/** Real shapes: resolved's calls and replies, properties, errors, a signal. */
const SEEDS = [
  emitMessage({
    type: MessageType.METHOD_CALL,
    flags: 0,
    serial: 2,
    ...RESOLVE1,
    member: "SetLinkDNS",
    signature: "ia(iay)",
    body: [7, [[2, new Uint8Array([198, 19, 0, 255])], [10, new Uint8Array(16)]]],
  }),
  emitMessage({
    type: MessageType.METHOD_CALL,
    flags: 0,
    serial: 3,
    ...RESOLVE1,
    member: "SetLinkDomains",
    signature: "ia(sb)",
    body: [7, [["svc.cluster.local", false], ["cluster.local", true]]],
  }),
  emitMessage({
    type: MessageType.METHOD_RETURN,
    flags: 1,
    serial: 9,
    replySerial: 3,
    destination: ":1.42",
    signature: "a{sv}v(ib)",
    body: [
      new Map([["DNS", new DBusVariant("a(iay)", [[2, new Uint8Array(4)]])], ["n", new DBusVariant("x", -5n)]]),
      new DBusVariant("as", ["a", "b"]),
      [1, false],
    ],
  }),
  emitMessage({
    type: MessageType.ERROR,
    flags: 1,
    serial: 10,
    replySerial: 2,
    errorName: "org.freedesktop.DBus.Error.AccessDenied",
    signature: "s",
    body: ["denied"],
  }),
  emitMessage({
    type: MessageType.SIGNAL,
    flags: 1,
    serial: 11,
    path: "/org/freedesktop/DBus",
    interface: "org.freedesktop.DBus",
    member: "NameAcquired",
    signature: "sdtqny",
    body: [":1.42", 1.5, 7n, 65535, -1, 255],
  }),
];

/** Only SyntaxError may escape. */
function onlySyntaxErrors(f: () => void): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
  }
}

const mutation = fc.tuple(
  fc.constantFrom("flip", "cut", "insert", "set32"),
  fc.double({ min: 0, max: 1, maxExcluded: true }),
  fc.nat(0xffffffff),
);

function mutate(seed: Uint8Array, ms: [string, number, number][]): Uint8Array {
  let b = seed.slice();
  for (const [kind, where, v] of ms) {
    const i = Math.floor(where * b.length);
    if (kind === "flip") b[i] = (b[i] ?? 0) ^ ((v & 0xff) || 1);
    else if (kind === "cut") b = b.slice(0, i);
    else if (kind === "insert") b = concat([b.subarray(0, i), Uint8Array.of(v & 0xff), b.subarray(i)]);
    else if (i + 4 <= b.length) new DataView(b.buffer).setUint32(i & ~3, v, true); // a length or a count
  }
  return b;
}

Deno.test("parseMessage() throws only SyntaxError on arbitrary bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 400 }), (b) => onlySyntaxErrors(() => parseMessage(b))),
    { numRuns: RUNS },
  );
});

Deno.test("parseMessage() on mutated real messages throws only SyntaxError, and what it reads fits in the bytes", () => {
  fc.assert(
    fc.property(fc.constantFrom(...SEEDS), fc.array(mutation, { minLength: 1, maxLength: 4 }), (seed, ms) => {
      const b = mutate(seed, ms);
      onlySyntaxErrors(() => {
        const m = parseMessage(b);
        assert.ok(JSON.stringify(m.body, (_, v) => typeof v === "bigint" ? 0 : v).length <= 64 * b.length);
      });
    }),
    { numRuns: RUNS },
  );
});

Deno.test("unmarshal() throws only SyntaxError for any signature and body", () => {
  const sigChar = fc.constantFrom(..."ybnqiuxtdsogvah(){}" as unknown as string[]);
  fc.assert(
    fc.property(
      fc.array(sigChar, { maxLength: 12 }).map((cs) => cs.join("")),
      fc.uint8Array({ maxLength: 200 }),
      fc.boolean(),
      (sig, body, little) => onlySyntaxErrors(() => unmarshal(sig, body, little)),
    ),
    { numRuns: RUNS },
  );
});
