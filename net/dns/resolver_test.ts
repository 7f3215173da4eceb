import assert from "node:assert/strict";
import { Resolver, type ResolverOptions } from "./resolver.ts";
import {
  dataOf,
  decode,
  dnsPacket,
  type FakeZone,
  query,
  silentForwarder,
  soa,
  ttlOf,
  zoneForwarder,
} from "./_test_util.ts";

const D = "cluster.local";
const ECHO = `echo.default.svc.${D}`;
const CLUSTER: FakeZone = {
  [ECHO]: [
    { type: "A", name: ECHO, ttl: 30, data: "198.19.0.10" },
    { type: "AAAA", name: ECHO, ttl: 30, data: "2001:db8:5::10" },
  ],
  [`_http._tcp.${ECHO}`]: [
    { type: "SRV", name: `_http._tcp.${ECHO}`, ttl: 30, data: { priority: 0, weight: 100, port: 8080, target: ECHO } },
  ],
  [`alias.default.svc.${D}`]: [{ type: "CNAME", name: `alias.default.svc.${D}`, ttl: 30, data: ECHO }],
  [`big.default.svc.${D}`]: Array.from({ length: 40 }, (_, i) => ({
    type: "A" as const,
    name: `big.default.svc.${D}`,
    ttl: 30,
    data: `198.19.0.${i + 1}`,
  })),
};
const HOME: FakeZone = {
  "laptop.home.test": [{ type: "A", name: "laptop.home.test", ttl: 60, data: "198.18.2.80" }],
  "example.team": [{ type: "A", name: "example.team", ttl: 60, data: "198.18.9.9" }],
};

function setup(options: Partial<ResolverOptions> = {}) {
  const cluster = zoneForwarder(CLUSTER, { negativeSoa: soa(D, 60, 30) });
  const upstream = zoneForwarder(HOME, { negativeSoa: soa("home.test", 60, 60) });
  const resolver = new Resolver({
    routing: { clusterDomain: D, namespace: "default", namespaces: ["default", "team"], subnets: ["198.19.0.0/24"] },
    cluster,
    upstream,
    ...options,
  });
  return { resolver, cluster, upstream };
}

async function ask(r: Resolver, q: Uint8Array, now = 0, transport: "udp" | "tcp" = "udp") {
  const a = await r.resolve(q, now, { transport });
  assert.ok(a, "an answer");
  return decode(a);
}

Deno.test("Resolver sends a cluster name to the cluster and answers with the client's id", async () => {
  const { resolver, cluster, upstream } = setup();
  const p = await ask(resolver, query(ECHO, "A", { id: 4242 }));
  assert.equal(p.id, 4242);
  assert.equal(p.rcode, "NOERROR");
  assert.deepEqual(p.answers!.map((a) => [a.name, a.type, dataOf(a)]), [[ECHO, "A", "198.19.0.10"]]);
  assert.deepEqual(cluster.asked, [`${ECHO} A`]);
  assert.deepEqual(upstream.asked, []);
  assert.equal(resolver.counters.cluster, 1);
});

Deno.test("Resolver asks the cluster for echo.default as its FQDN and answers under the name asked", async () => {
  const { resolver, cluster } = setup();
  const p = await ask(resolver, query("Echo.Default", "AAAA"));
  assert.deepEqual(cluster.asked, [`${ECHO} AAAA`]);
  assert.deepEqual(p.questions, [{ name: "Echo.Default", type: "AAAA", class: "IN" }]);
  assert.deepEqual(p.answers!.map((a) => [a.name, dataOf(a)]), [["Echo.Default", "2001:db8:5::10"]]);
});

Deno.test("Resolver maps a short SRV name back and leaves the SRV target fully qualified", async () => {
  const { resolver } = setup();
  const p = await ask(resolver, query("_http._tcp.echo.default", "SRV"));
  assert.equal(p.answers![0]!.name, "_http._tcp.echo.default");
  assert.deepEqual(dataOf(p.answers![0]!), { priority: 0, weight: 100, port: 8080, target: ECHO });
});

Deno.test("Resolver keeps a CNAME chain: the alias renamed, its target untouched", async () => {
  const { resolver } = setup();
  const p = await ask(resolver, query("alias", "A"));
  assert.deepEqual(p.answers!.map((a) => [a.name, a.type, dataOf(a)]), [["alias", "CNAME", ECHO]]);
});

Deno.test("Resolver sends other names upstream byte for byte", async () => {
  const sent: Uint8Array[] = [];
  const { resolver } = setup({
    upstream: (q) => {
      sent.push(q);
      return zoneForwarder(HOME)(q, new AbortController().signal);
    },
  });
  const q = query("laptop.home.test", "A", { udpSize: 1232 });
  const p = await ask(resolver, q);
  assert.deepEqual(p.answers!.map(dataOf), ["198.18.2.80"]);
  assert.deepEqual(sent, [q]);
  assert.equal(resolver.counters.upstream, 1);
  assert.equal(resolver.counters.cluster, 0);
});

Deno.test("Resolver asks upstream when the cluster has no such short name (a namespace named like a TLD not on the public list)", async () => {
  const { resolver, cluster, upstream } = setup();
  const p = await ask(resolver, query("example.team", "A"));
  assert.deepEqual(cluster.asked, [`example.team.svc.${D} A`]);
  assert.deepEqual(upstream.asked, ["example.team A"]);
  assert.deepEqual(p.answers!.map((a) => [a.name, dataOf(a)]), [["example.team", "198.18.9.9"]]);
  const neither = await ask(resolver, query("nothing.team", "A"));
  assert.equal(neither.rcode, "NXDOMAIN");
  assert.equal(neither.questions![0]!.name, "nothing.team");
  const refusing = setup({
    upstream: (q) => Promise.resolve(Uint8Array.from([...q.subarray(0, 2), 0x81, 0x85, ...q.subarray(4)])),
  });
  assert.equal((await ask(refusing.resolver, query("nothing.team", "A"))).rcode, "NXDOMAIN");
  const off = setup({ fallbackToUpstream: false });
  assert.equal((await ask(off.resolver, query("example.team", "A"))).rcode, "NXDOMAIN");
  assert.deepEqual(off.upstream.asked, []);
});

Deno.test("Resolver answers from its cache until the TTL runs out (fake clock)", async () => {
  const { resolver, cluster } = setup();
  await ask(resolver, query(ECHO, "A"), 1_000);
  const again = await ask(resolver, query(ECHO, "A", { id: 9 }), 11_000);
  assert.equal(again.id, 9);
  assert.equal(ttlOf(again.answers![0]!), 20);
  assert.equal(cluster.asked.length, 1);
  await ask(resolver, query(ECHO, "A"), 31_000);
  assert.equal(cluster.asked.length, 2);
  assert.deepEqual(
    [resolver.counters.queries, resolver.counters.cacheHits, resolver.counters.cacheMisses],
    [3, 1, 2],
  );
});

Deno.test("Resolver caches NXDOMAIN for every type and NODATA for one type", async () => {
  const { resolver, cluster } = setup();
  assert.equal((await ask(resolver, query(`nope.default.svc.${D}`, "A"))).rcode, "NXDOMAIN");
  const aaaa = await ask(resolver, query(`nope.default.svc.${D}`, "AAAA"), 5_000);
  assert.equal(aaaa.rcode, "NXDOMAIN");
  assert.equal(aaaa.questions![0]!.type, "AAAA");
  assert.equal(cluster.asked.length, 1);
  const mx = await ask(resolver, query(ECHO, "MX"));
  assert.equal(mx.rcode, "NOERROR");
  assert.equal(mx.answers!.length, 0);
  await ask(resolver, query(ECHO, "MX"), 29_000);
  assert.equal(cluster.asked.length, 2);
  assert.equal((await ask(resolver, query(ECHO, "A"), 29_000)).answers!.length, 1);
  assert.equal(cluster.asked.length, 3);
  await ask(resolver, query(`nope.default.svc.${D}`, "A"), 30_000);
  assert.equal(cluster.asked.length, 4);
});

Deno.test("Resolver answers SERVFAIL when the cluster does not answer within the timeout", async () => {
  const silent = silentForwarder();
  const { resolver } = setup({ cluster: silent, timeoutMs: 150 });
  const t0 = performance.now();
  const p = await ask(resolver, query(ECHO, "A", { id: 5 }));
  const ms = performance.now() - t0;
  assert.equal(p.rcode, "SERVFAIL");
  assert.equal(p.id, 5);
  assert.ok(ms >= 140 && ms < 400, `answered after ${ms.toFixed(0)} ms`);
  assert.equal(silent.aborted, 1);
  assert.deepEqual([resolver.counters.timeouts, resolver.counters.servfail], [1, 1]);
  // Not cached: the next query is forwarded again.
  await ask(resolver, query(ECHO, "A"));
  assert.equal(silent.calls, 2);
});

Deno.test("Resolver answers SERVFAIL when a forwarder fails or answers another question", async () => {
  const failing = setup({ upstream: () => Promise.reject(new Error("network unreachable")) });
  assert.equal((await ask(failing.resolver, query("example.com"))).rcode, "SERVFAIL");
  const wrong = setup({ upstream: (_q, s) => zoneForwarder(HOME)(query("laptop.home.test", "A"), s) });
  assert.equal((await ask(wrong.resolver, query("example.com"))).rcode, "SERVFAIL");
  assert.equal(failing.resolver.counters.forwardErrors + wrong.resolver.counters.forwardErrors, 2);
});

Deno.test("Resolver truncates a UDP answer over 512 bytes with TC set, and not over EDNS or TCP", async () => {
  const { resolver } = setup();
  const raw = await resolver.resolve(query("big", "A"), 0);
  assert.ok(raw && raw.length <= 512);
  const p = decode(raw);
  assert.equal(p.flag_tc, true);
  assert.equal(p.answers!.length, 0);
  assert.equal(resolver.counters.truncated, 1);
  assert.equal((await ask(resolver, query("big", "A"), 0, "tcp")).answers!.length, 40);
  assert.equal((await ask(resolver, query("big", "A", { udpSize: 4096 }))).answers!.length, 40);
});

Deno.test("Resolver drops and counts malformed messages and answers, and never forwards them", async () => {
  const { resolver, cluster, upstream } = setup();
  const answerBytes = new Uint8Array(
    dnsPacket.encode({ type: "response", id: 1, questions: [{ name: "x", type: "A" }] }),
  );
  for (const bad of [new Uint8Array(3), Uint8Array.from([...query("x"), 1, 2]), answerBytes, new Uint8Array(0)]) {
    assert.equal(await resolver.resolve(bad, 0), null);
  }
  assert.equal(resolver.counters.malformed, 4);
  assert.equal(resolver.counters.queries, 4);
  assert.equal(cluster.asked.length + upstream.asked.length, 0);
});

Deno.test("Resolver answers FORMERR to a query without a question and NOTIMP to other opcodes", async () => {
  const { resolver } = setup();
  const none = new Uint8Array(12);
  none[1] = 7;
  assert.equal(decode((await resolver.resolve(none, 0))!).rcode, "FORMERR");
  const status = query("x");
  status[2] = (status[2]! & 0x87) | (2 << 3);
  assert.equal(decode((await resolver.resolve(status, 0))!).rcode, "NOTIMP");
});

Deno.test("Resolver forwards identical queries in flight once", async () => {
  const cluster = zoneForwarder(CLUSTER, { delayMs: 20 });
  const { resolver } = setup({ cluster });
  const answers = await Promise.all(
    Array.from({ length: 5 }, (_, i) => resolver.resolve(query(ECHO, "A", { id: i + 1 }), 0)),
  );
  assert.deepEqual(answers.map((a) => decode(a!).id), [1, 2, 3, 4, 5]);
  assert.equal(cluster.asked.length, 1);
});

Deno.test("Resolver.close() ends lookups in flight with SERVFAIL", async () => {
  const { resolver } = setup({ cluster: silentForwarder(), timeoutMs: 10_000 });
  const pending = resolver.resolve(query(ECHO, "A"), 0);
  await new Promise((r) => setTimeout(r, 5));
  resolver.close();
  assert.equal(decode((await pending)!).rcode, "SERVFAIL");
});

Deno.test("Resolver gives each client sharing one lookup its own id, even when the forwarder answers with a Buffer", async () => {
  // protobufjs hands the manager's answer back as a Node Buffer, whose slice() is a view: the clients waiting on
  // one lookup must still get copies of their own.
  const { Buffer } = await import("node:buffer");
  const zone = zoneForwarder(CLUSTER, { negativeSoa: soa(D, 60, 30) });
  const resolver = new Resolver({
    routing: { clusterDomain: D, namespace: "default" },
    cluster: async (q, signal) => Buffer.from(await zone(q, signal)),
    upstream: zone,
  });
  const ids = [101, 102, 103, 104, 105];
  const answers = await Promise.all(ids.map((id) => resolver.resolve(query(ECHO, "A", { id }), 0)));
  assert.deepEqual(answers.map((a) => decode(a!).id), ids);
  const again = await Promise.all(ids.map((id) => resolver.resolve(query(ECHO, "A", { id: id + 100 }), 1)));
  assert.deepEqual(again.map((a) => decode(a!).id), ids.map((id) => id + 100));
  resolver.close();
});
