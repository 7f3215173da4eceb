import assert from "node:assert/strict";
import { Resolver } from "../net/dns/resolver.ts";
import { decode, type FakeZone, query, silentForwarder, zoneForwarder } from "../net/dns/_test_util.ts";
import { nameserverForwarder } from "../cli/dns/forwarder.ts";
import { serveDns } from "./dns_server.ts";
import dgram from "node:dgram";
import { frameTcp, TcpDeframer } from "../net/dns/tcp_framing.ts";

// These tests use the host's loopback only, on ports the kernel picks.
const ZONE: FakeZone = {
  "laptop.home.test": [{ type: "A", name: "laptop.home.test", ttl: 60, data: "198.18.2.80" }],
  "big.home.test": Array.from({ length: 60 }, (_, i) => ({
    type: "A" as const,
    name: "big.home.test",
    ttl: 60,
    data: `198.18.3.${i + 1}`,
  })),
};

function resolverFor(zone: FakeZone) {
  return new Resolver({
    routing: { clusterDomain: "cluster.local", namespace: "default" },
    cluster: silentForwarder(),
    upstream: zoneForwarder(zone),
    timeoutMs: 500,
  });
}

Deno.test("nameserverForwarder() asks over UDP and retries over TCP when the answer is truncated", async () => {
  const server = await serveDns(resolverFor(ZONE), { hostname: "127.0.0.1", port: 0 });
  const fwd = nameserverForwarder([{ ip: "127.0.0.1", port: server.port }]);
  try {
    const small = decode(await fwd(query("laptop.home.test", "A", { id: 31 }), new AbortController().signal));
    assert.equal(small.id, 31);
    assert.deepEqual(small.answers!.map((a) => a.name), ["laptop.home.test"]);
    const big = decode(await fwd(query("big.home.test", "A", { id: 32 }), new AbortController().signal));
    assert.equal(big.id, 32);
    assert.equal(big.flag_tc, false);
    assert.equal(big.answers!.length, 60);
  } finally {
    await fwd.close();
    await server.close();
  }
});

Deno.test("nameserverForwarder() moves to the next server when one does not answer, and can be aborted", async () => {
  const server = await serveDns(resolverFor(ZONE), { hostname: "127.0.0.1", port: 0 });
  // A bound socket that never answers stands for a dead nameserver.
  const dead = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => dead.bind(0, "127.0.0.1", resolve));
  const deadPort = dead.address().port;
  const fwd = nameserverForwarder(
    [{ ip: "127.0.0.1", port: deadPort }, { ip: "127.0.0.1", port: server.port }],
    { attemptTimeoutMs: 100 },
  );
  const toDead = nameserverForwarder([{ ip: "127.0.0.1", port: deadPort }]);
  try {
    const t0 = performance.now();
    const a = decode(await fwd(query("laptop.home.test"), new AbortController().signal));
    assert.equal(a.answers!.length, 1);
    assert.ok(performance.now() - t0 >= 95);
    const ac = new AbortController();
    const p = toDead(query("x"), ac.signal);
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(p, /No nameserver answered .*aborted/);
  } finally {
    await fwd.close();
    await toDead.close();
    await new Promise<void>((resolve) => dead.close(() => resolve()));
    await server.close();
  }
});

Deno.test("serveDns() answers over TCP with pipelined queries on one connection", async () => {
  const server = await serveDns(resolverFor(ZONE), { hostname: "127.0.0.1", port: 0 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    await conn.write(
      Uint8Array.from([
        ...frameTcp(query("laptop.home.test", "A", { id: 1 })),
        ...frameTcp(query("big.home.test", "A", { id: 2 })),
      ]),
    );
    const d = new TcpDeframer();
    const got: Uint8Array[] = [];
    const buf = new Uint8Array(4096);
    for (let i = 0; i < 50 && got.length < 2; i++) {
      const n = await conn.read(buf);
      if (n === null) break;
      got.push(...d.push(buf.subarray(0, n)));
    }
    assert.deepEqual(got.map((m) => decode(m).id).sort(), [1, 2]);
    assert.equal(got.map((m) => decode(m)).find((p) => p.id === 2)!.answers!.length, 60);
  } finally {
    conn.close();
    await server.close();
  }
});
