import assert from "node:assert/strict";
import { cacheKeyParts, cachePolicy, DnsCache } from "./cache.ts";
import { scanMessage } from "./message.ts";
import { decode, dnsPacket, query, soa, ttlOf } from "./_test_util.ts";

const SOA = soa("cluster.local", 60, 30); // negative TTL = min(60, 30) = 30 s (RFC 2308 section 5)

function answer(
  name: string,
  type: dnsPacket.RecordType,
  rcode: number,
  answers: dnsPacket.Answer[],
  authorities: dnsPacket.Answer[] = [],
): Uint8Array {
  return new Uint8Array(dnsPacket.encode({
    type: "response",
    id: 1,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode,
    questions: [{ name, type }],
    answers,
    authorities,
  }));
}

function put(cache: DnsCache, bytes: Uint8Array, now: number) {
  const info = scanMessage(bytes)!;
  const q = scanMessage(query(info.question!.name, "A"))!;
  return cache.put({ ...cacheKeyParts(q)!, type: info.question!.type }, bytes, info, now);
}

function get(cache: DnsCache, name: string, type: dnsPacket.RecordType, now: number) {
  const hit = cache.get(cacheKeyParts(scanMessage(query(name, type))!)!, now);
  return hit && { kind: hit.kind, packet: decode(hit.answer) };
}

const A = (name: string, ttl: number, data: string): dnsPacket.Answer => ({ type: "A", name, ttl, data });

Deno.test("DnsCache serves a positive answer until its smallest TTL runs out, with TTLs lowered", () => {
  const cache = new DnsCache();
  const t0 = 1_000_000;
  const bytes = answer("echo.default.svc.cluster.local", "A", 0, [
    A("echo.default.svc.cluster.local", 30, "198.19.0.10"),
    A("echo.default.svc.cluster.local", 45, "198.19.0.11"),
  ]);
  assert.equal(put(cache, bytes, t0), "positive");
  const at10 = get(cache, "echo.default.svc.cluster.local", "A", t0 + 10_400)!;
  assert.deepEqual(at10.packet.answers!.map(ttlOf), [20, 35]);
  const at29 = get(cache, "echo.default.svc.cluster.local", "A", t0 + 29_999)!;
  assert.deepEqual(at29.packet.answers!.map(ttlOf), [1, 16]);
  assert.equal(get(cache, "echo.default.svc.cluster.local", "A", t0 + 30_000), null);
  assert.equal(cache.size, 0);
});

Deno.test("DnsCache does not keep TTL 0 answers, unless minTtl raises them", () => {
  const bytes = answer("echo.default.svc.cluster.local", "A", 0, [
    A("echo.default.svc.cluster.local", 0, "198.19.0.10"),
  ]);
  const strict = new DnsCache();
  assert.equal(put(strict, bytes, 0), null);
  const floored = new DnsCache({ minTtl: 5 });
  assert.equal(put(floored, bytes, 0), "positive");
  assert.equal(ttlOf(get(floored, "echo.default.svc.cluster.local", "A", 2_000)!.packet.answers![0]!), 3);
  assert.equal(get(floored, "echo.default.svc.cluster.local", "A", 5_000), null);
});

Deno.test("DnsCache keeps NXDOMAIN for every type of the name, for min(SOA TTL, MINIMUM)", () => {
  const cache = new DnsCache();
  assert.equal(put(cache, answer("nope.default.svc.cluster.local", "A", 3, [], [SOA]), 0), "nxdomain");
  const aaaa = get(cache, "nope.default.svc.cluster.local", "AAAA", 29_000)!;
  assert.equal(aaaa.kind, "nxdomain");
  assert.equal(aaaa.packet.rcode, "NXDOMAIN");
  assert.equal(aaaa.packet.questions![0]!.type, "AAAA");
  assert.equal(ttlOf(aaaa.packet.authorities![0]!), 1);
  assert.equal(get(cache, "nope.default.svc.cluster.local", "A", 30_000), null);
});

Deno.test("DnsCache keeps NODATA for its type only", () => {
  const cache = new DnsCache();
  assert.equal(put(cache, answer("echo.default.svc.cluster.local", "MX", 0, [], [SOA]), 0), "nodata");
  const mx = get(cache, "echo.default.svc.cluster.local", "MX", 1_000)!;
  assert.equal(mx.kind, "nodata");
  assert.equal(mx.packet.rcode, "NOERROR");
  assert.equal(mx.packet.answers!.length, 0);
  assert.equal(get(cache, "echo.default.svc.cluster.local", "A", 1_000), null);
});

Deno.test("DnsCache does not keep negative answers without an SOA, SERVFAIL or truncated answers", () => {
  const cache = new DnsCache();
  assert.equal(put(cache, answer("nope.cluster.local", "A", 3, []), 0), null);
  assert.equal(put(cache, answer("nope.cluster.local", "A", 2, [], [SOA]), 0), null);
  const tc = answer("big.cluster.local", "A", 0, [A("big.cluster.local", 30, "198.19.0.1")]);
  tc[2]! |= 0x02;
  assert.equal(put(cache, tc, 0), null);
  assert.equal(cache.size, 0);
});

Deno.test("DnsCache caps TTLs, negative TTLs and its size (least recently used goes first)", () => {
  const cache = new DnsCache({ maxEntries: 2, maxTtl: 100, maxNegativeTtl: 10 });
  put(cache, answer("a.x", "A", 0, [A("a.x", 1_000_000, "198.19.0.1")]), 0);
  assert.equal(ttlOf(get(cache, "a.x", "A", 0)!.packet.answers![0]!), 100);
  put(cache, answer("n.x", "A", 3, [], [soa("x", 3600, 3600)]), 0);
  assert.equal(get(cache, "n.x", "A", 10_000), null);
  put(cache, answer("b.x", "A", 0, [A("b.x", 50, "198.19.0.2")]), 0);
  get(cache, "a.x", "A", 1);
  put(cache, answer("c.x", "A", 0, [A("c.x", 50, "198.19.0.3")]), 1);
  assert.ok(get(cache, "a.x", "A", 2));
  assert.equal(get(cache, "b.x", "A", 2), null);
  assert.equal(
    new DnsCache({ maxEntries: 0 }).put(
      cacheKeyParts(scanMessage(query("a.x"))!)!,
      answer("a.x", "A", 0, [A("a.x", 5, "198.19.0.1")]),
      scanMessage(answer("a.x", "A", 0, [A("a.x", 5, "198.19.0.1")]))!,
      0,
    ),
    null,
  );
});

Deno.test("cachePolicy() treats a TTL with the top bit set as zero (RFC 2181 section 8)", () => {
  const bytes = answer("a.x", "A", 0, [A("a.x", 0x80000001, "198.19.0.1")]);
  assert.equal(cachePolicy(bytes, scanMessage(bytes)!), null);
});

Deno.test("DnsCache keys EDNS and plain queries apart", () => {
  const cache = new DnsCache();
  const bytes = answer("a.x", "A", 0, [A("a.x", 5, "198.19.0.1")]);
  cache.put(cacheKeyParts(scanMessage(query("a.x"))!)!, bytes, scanMessage(bytes)!, 0);
  assert.ok(cache.get(cacheKeyParts(scanMessage(query("a.x"))!)!, 0));
  assert.equal(cache.get(cacheKeyParts(scanMessage(query("a.x", "A", { udpSize: 1232 }))!)!, 0), null);
});
