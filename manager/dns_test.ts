import assert from "node:assert/strict";
import dgram from "node:dgram";
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { DnsForwarder } from "./dns.ts";
import { GrpcError, Status } from "../proto/grpc_web.ts";

function query(id: number, name: string): Uint8Array {
  return new Uint8Array(dnsPacket.encode({ type: "query", id, flags: 0x100, questions: [{ type: "A", name }] }));
}

/**
 * A DNS server test double on 127.0.0.1 (dnsmasq answers in order; this one holds `batch` queries and answers them
 * in reverse, each with an A record that encodes the query's name, optionally after a forged answer).
 */
async function fakeServer(
  batch: number,
  opts: {
    forgeFirst?: boolean;
    silent?: boolean;
    ttl?: number;
    /** Before the real answer: one with the same id and name from `sock` (another address), or with another type. */
    forge?: (
      answerTo: (qname: string, type?: "A" | "SRV") => Uint8Array,
      from: dgram.RemoteInfo,
      query: { name: string; sock: dgram.Socket },
    ) => void;
  } = {},
) {
  const sock = dgram.createSocket("udp4");
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
  const held: [Buffer, dgram.RemoteInfo][] = [];
  sock.on("message", (msg: Buffer, from: dgram.RemoteInfo) => {
    if (opts.silent) return;
    held.push([msg, from]);
    if (held.length < batch) return;
    for (const [m, f] of held.splice(0).reverse()) {
      const q = dnsPacket.decode(m);
      const name = q.questions![0]!.name;
      const n = Number(/^h(\d+)\./.exec(name)?.[1] ?? 0);
      const answer = (qname: string, type: "A" | "SRV" = "A") =>
        new Uint8Array(dnsPacket.encode({
          type: "response",
          id: q.id,
          flags: 0x8180,
          questions: [{ type, name: qname }],
          answers: type === "A" ? [{ type: "A", name: qname, ttl: opts.ttl ?? 5, data: `198.19.1.${n}` }] : [{
            type: "SRV",
            name: qname,
            ttl: 5,
            data: { port: 1, target: "forged.example", priority: 0, weight: 0 },
          }],
        }));
      if (opts.forgeFirst) sock.send(answer("forged.example"), f.port, f.address);
      opts.forge?.(answer, f, { name, sock });
      sock.send(answer(name), f.port, f.address);
    }
  });
  return { port: (sock.address() as { port: number }).port, close: () => new Promise<void>((r) => sock.close(r)) };
}

Deno.test("DnsForwarder: 50 queries in flight on one socket, all with the same client id, each gets its own answer", async () => {
  const server = await fakeServer(50);
  const f = new DnsForwarder({ host: "127.0.0.1", port: server.port });
  try {
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => f.forward(query(0x1234, `h${i}.default.svc.cluster.local`), 2000)),
    );
    answers.forEach((a, i) => {
      const d = dnsPacket.decode(Buffer.from(a));
      assert.equal(d.id, 0x1234, "the client's id is restored");
      assert.equal(d.questions![0]!.name, `h${i}.default.svc.cluster.local`);
      assert.equal((d.answers![0] as { data: string }).data, `198.19.1.${i}`);
    });
    assert.equal(f.inFlight, 0);
  } finally {
    f.close();
    await server.close();
  }
});

Deno.test("DnsForwarder: an answer for another question under the right id is ignored", async () => {
  const server = await fakeServer(1, { forgeFirst: true });
  const f = new DnsForwarder({ host: "127.0.0.1", port: server.port });
  try {
    const a = dnsPacket.decode(Buffer.from(await f.forward(query(7, "h3.default.svc.cluster.local"), 2000)));
    assert.equal(a.questions![0]!.name, "h3.default.svc.cluster.local");
    assert.equal((a.answers![0] as { data: string }).data, "198.19.1.3");
  } finally {
    f.close();
    await server.close();
  }
});

Deno.test("DnsForwarder: a server that does not answer fails with UNAVAILABLE within the timeout", async () => {
  const server = await fakeServer(1, { silent: true });
  const f = new DnsForwarder({ host: "127.0.0.1", port: server.port });
  try {
    const t0 = performance.now();
    await assert.rejects(f.forward(query(9, "h1.default.svc.cluster.local"), 200), (e: unknown) => {
      assert.ok(e instanceof GrpcError && e.code === Status.UNAVAILABLE, String(e));
      return true;
    });
    assert.ok(performance.now() - t0 < 1000);
    assert.equal(f.inFlight, 0);
  } finally {
    f.close();
    await server.close();
  }
});

Deno.test("DnsForwarder: an answer from another address, though from the server's port with the right id, is ignored", async () => {
  const forger = dgram.createSocket("udp4");
  const server = await fakeServer(1, {
    forge: (answer, from) => forger.send(answer("h4.default.svc.cluster.local"), from.port, from.address),
  });
  await new Promise<void>((r) => forger.bind(server.port, "127.0.0.2", r));
  const f = new DnsForwarder({ host: "127.0.0.1", port: server.port });
  try {
    const a = dnsPacket.decode(Buffer.from(await f.forward(query(7, "h4.default.svc.cluster.local"), 2000)));
    assert.equal((a.answers![0] as { data: string }).data, "198.19.1.4");
    // The forged answer comes first from 127.0.0.2; wait for it to have been seen and dropped.
    for (let i = 0; i < 100 && f.ignored === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(f.ignored, 1);
  } finally {
    f.close();
    await new Promise<void>((r) => forger.close(r));
    await server.close();
  }
});

Deno.test("DnsForwarder: an SRV answer to an A question under the right id is ignored (type bytes are not case-folded)", async () => {
  // SRV is type 33 (0x21), A is 1: equal when 0x20 is folded away, as the forwarder's compare did.
  const server = await fakeServer(1, {
    forge: (answer, from, q) => q.sock.send(answer(q.name, "SRV"), from.port, from.address),
  });
  const f = new DnsForwarder({ host: "127.0.0.1", port: server.port });
  try {
    const a = dnsPacket.decode(Buffer.from(await f.forward(query(7, "h5.default.svc.cluster.local"), 2000)));
    assert.equal(a.questions![0]!.type, "A");
    assert.equal((a.answers![0] as { data: string }).data, "198.19.1.5");
    assert.equal(f.ignored, 1);
  } finally {
    f.close();
    await server.close();
  }
});

Deno.test("DnsForwarder: TTLs over 300 s are lowered to 300 s; names still match without regard to case", async () => {
  const server = await fakeServer(1, { ttl: 86_400 });
  const f = new DnsForwarder({ host: "127.0.0.1", port: server.port });
  try {
    const a = dnsPacket.decode(Buffer.from(await f.forward(query(7, "H6.Default.svc.cluster.local"), 2000)));
    assert.equal((a.answers![0] as { ttl: number }).ttl, 300);
  } finally {
    f.close();
    await server.close();
  }
});

Deno.test("DnsForwarder: queries move to a new socket (a new source port) every 100, old ones close", async () => {
  const ports = new Set<number>();
  const server = await fakeServer(1, { forge: (_answer, from) => ports.add(from.port) });
  const f = new DnsForwarder({ host: "127.0.0.1", port: server.port });
  try {
    for (let i = 0; i < 250; i++) await f.forward(query(i, `h${i % 200}.default.svc.cluster.local`), 2000);
    assert.equal(ports.size, 3);
    assert.equal(f.sockets, 1);
  } finally {
    f.close();
    await server.close();
  }
});
