import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { capTtls, questionEnd, sameQuestion } from "./dns_message.ts";

const msg = (p: object) => new Uint8Array(dnsPacket.encode(p as dnsPacket.Packet));
const q = (name: string, type = "A") => msg({ type: "query", id: 1, questions: [{ type, name }] });

Deno.test("questionEnd() finds the end of the question section, and null for one that runs past the message", () => {
  const b = q("a.example");
  assert.equal(questionEnd(b), b.length);
  assert.equal(questionEnd(b.subarray(0, b.length - 1)), null);
  assert.equal(questionEnd(b.subarray(0, 11)), null);
});

Deno.test("sameQuestion() folds the case of letters in names only: type, class and other bytes compare exactly", () => {
  assert.equal(sameQuestion(q("a.example"), q("A.EXAMPLE")), true);
  assert.equal(sameQuestion(q("a.example"), q("a.example", "SRV")), false); // 0x21 vs 0x01
  assert.equal(sameQuestion(q("a@.example"), q("a`.example")), false); // 0x40 and 0x60 are not letters
  assert.equal(sameQuestion(q("a.example"), q("b.example")), false);
});

Deno.test("capTtls() lowers TTLs over the cap in every section but OPT's, and rejects records past the end", () => {
  const b = msg({
    type: "response",
    id: 1,
    questions: [{ type: "A", name: "a.example" }],
    answers: [
      { type: "A", name: "a.example", ttl: 86_400, data: "198.19.0.1" },
      { type: "A", name: "a.example", ttl: 7, data: "198.19.0.2" },
    ],
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0x8000 }],
  });
  assert.equal(capTtls(b, 300), 1);
  const d = dnsPacket.decode(Buffer.from(b));
  assert.deepEqual(d.answers!.map((a) => (a as { ttl: number }).ttl), [300, 7]);
  assert.equal((d.additionals![0] as { flags: number }).flags, 0x8000, "OPT's flags are not a TTL");
  assert.equal(capTtls(b.subarray(0, b.length - 3), 300), null);
});
