import assert from "node:assert/strict";
// @deno-types="@types/dns-packet"
import * as dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { parseHosts, PodResolver, type RawForwarder } from "./dns.ts";

function query(name: string, type: "A" | "AAAA" = "A"): Uint8Array {
  return new Uint8Array(
    dnsPacket.encode({
      id: 4242,
      type: "query",
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name, type, class: "IN" }],
    }),
  );
}

function answer(q: Uint8Array, rcode: "NOERROR" | "NXDOMAIN", ips: string[] = []): Uint8Array {
  const p = dnsPacket.decode(Buffer.from(q));
  return new Uint8Array(dnsPacket.encode({
    id: p.id,
    type: "response",
    flags: dnsPacket.RECURSION_AVAILABLE | (rcode === "NXDOMAIN" ? 3 : 0),
    questions: p.questions,
    answers: ips.map((data) => ({ type: "A", name: p.questions![0]!.name, ttl: 30, class: "IN", data })),
  } as dnsPacket.Packet));
}

/** A forwarder that answers from a table: a name in it gets its addresses, others NXDOMAIN. */
function fakeServer(table: Record<string, string[]>): RawForwarder & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    forward(q) {
      const name = dnsPacket.decode(Buffer.from(q)).questions![0]!.name;
      asked.push(name);
      const ips = table[name];
      return Promise.resolve(ips ? answer(q, "NOERROR", ips) : answer(q, "NXDOMAIN"));
    },
  };
}

const decode = (b: Uint8Array) => dnsPacket.decode(Buffer.from(b)) as dnsPacket.DecodedPacket & { rcode?: string };

Deno.test("parseHosts() reads addresses and every alias, ignoring comments", () => {
  const h = parseHosts(
    "127.0.0.1 localhost\n# a comment\n198.19.128.77 legacy-db legacy-db.corp  # hostAliases\n\n::1 localhost\n",
  );
  assert.deepEqual(h.get("legacy-db"), ["198.19.128.77"]);
  assert.deepEqual(h.get("legacy-db.corp"), ["198.19.128.77"]);
  assert.deepEqual(h.get("localhost"), ["127.0.0.1", "::1"]);
});

Deno.test("PodResolver answers from the pod's nameserver first", async () => {
  const r = new PodResolver(
    fakeServer({ "echo.default.svc.cluster.local": ["198.19.0.10"] }),
    new Map(),
    "default",
    "cluster.local",
  );
  const a = decode(await r.answer(query("echo.default.svc.cluster.local")));
  assert.equal(a.id, 4242);
  assert.deepEqual(a.answers!.map((x) => (x as { data: unknown }).data), ["198.19.0.10"]);
});

Deno.test("PodResolver answers a hosts-only name asked as <name>.<ns>.svc.<domain>, as the app would ask <name>", async () => {
  const server = fakeServer({});
  const r = new PodResolver(server, parseHosts("198.19.128.77 legacy-db\n"), "default", "cluster.local");
  const a = decode(await r.answer(query("legacy-db.default.svc.cluster.local")));
  assert.deepEqual(server.asked, ["legacy-db.default.svc.cluster.local"]);
  assert.equal(a.id, 4242);
  assert.equal(a.answers![0]!.name, "legacy-db.default.svc.cluster.local");
  assert.equal((a.answers![0] as { data: unknown }).data, "198.19.128.77");
  // An AAAA question for a name with only an IPv4 entry gets the server's answer (NXDOMAIN here), not a made-up one.
  const six = decode(await r.answer(query("legacy-db.default.svc.cluster.local", "AAAA")));
  assert.equal(six.answers!.length, 0);
});

Deno.test("PodResolver gives the server's answer (or nothing) when the pod knows no better", async () => {
  const r = new PodResolver(fakeServer({}), new Map(), "default", "cluster.local");
  const a = decode(await r.answer(query("nothing.default.svc.cluster.local")));
  assert.equal(a.rcode, "NXDOMAIN");
  const silent = new PodResolver(
    { forward: () => Promise.reject(new Error("timeout")) },
    new Map(),
    "default",
    "cluster.local",
  );
  assert.equal((await silent.answer(query("x.default.svc.cluster.local"))).length, 0);
  assert.equal((await silent.answer(new Uint8Array([1, 2, 3]))).length, 0);
});
