import assert from "node:assert/strict";
import protobuf from "protobufjs";
import { decodeTunnelFrame, DialCode, encodeTunnelFrame } from "./messages.ts";

const bytes = (...b: number[]) => new Uint8Array(b);
/** What encodeTunnelFrame() wrote, as a plain Uint8Array (protobufjs hands back a Buffer under Deno's node compat). */
const encoded = (...args: Parameters<typeof encodeTunnelFrame>) => new Uint8Array(encodeTunnelFrame(...args));
const CLOSED = [0x63, 0x6c, 0x6f, 0x73, 0x65, 0x64]; // "closed"

Deno.test("encodeTunnelFrame() writes a reset's code as TunnelReset field 2, after its reason, byte for byte", () => {
  // TunnelFrame.reset (field 5, length-delimited: key 0x2a), length 10: reason (field 1: key 0x0a) "closed", then
  // code (field 2, varint: key 0x10) DIAL_CODE_REFUSED (2).
  const refused = bytes(0x2a, 0x0a, 0x0a, 0x06, ...CLOSED, 0x10, 0x02);
  assert.deepEqual(encoded({ kind: "reset", reason: "closed", code: DialCode.refused }), refused);
  assert.deepEqual(decodeTunnelFrame(refused), { kind: "reset", reason: "closed", code: DialCode.refused });
});

Deno.test("a plain reset is the same bytes as before the code existed, and decodes without a code", () => {
  const plain = bytes(0x2a, 0x08, 0x0a, 0x06, ...CLOSED);
  assert.deepEqual(encoded({ kind: "reset", reason: "closed" }), plain);
  assert.deepEqual(encoded({ kind: "reset", reason: "closed", code: DialCode.unspecified }), plain);
  assert.deepEqual(decodeTunnelFrame(plain), { kind: "reset", reason: "closed" });
  // A reset with no reason and no code is an empty TunnelReset.
  assert.deepEqual(encoded({ kind: "reset", reason: "" }), bytes(0x2a, 0x00));
  assert.deepEqual(decodeTunnelFrame(bytes(0x2a, 0x00)), { kind: "reset", reason: "" });
});

Deno.test("a reset's code decodes in any field order, and a peer that predates it reads the reason alone", () => {
  // Protobuf allows fields in any order (encoding guide, "Field Order"): code first, then reason.
  const codeFirst = bytes(0x2a, 0x0a, 0x10, 0x02, 0x0a, 0x06, ...CLOSED);
  assert.deepEqual(decodeTunnelFrame(codeFirst), { kind: "reset", reason: "closed", code: DialCode.refused });
  // The TunnelReset of before (reason only): field 2 is an unknown field, skipped.
  const old = protobuf.parse(`syntax = "proto3";
    message TunnelReset { string reason = 1; }
    message TunnelFrame { oneof kind { bytes data = 1; TunnelReset reset = 5; } }`).root.lookupType("TunnelFrame");
  const seen = old.toObject(old.decode(encodeTunnelFrame({ kind: "reset", reason: "closed", code: DialCode.refused })));
  assert.deepEqual(seen, { reset: { reason: "closed" } });
});
