/**
 * An independent client: nice-grpc-web's fetch transport (over Deno's fetch, HTTP/1.1) against our manager.
 * Its service definition is built from our .proto through protobufjs, not from our client code.
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import protobuf from "protobufjs";
import { createChannel, createClient, FetchTransport } from "nice-grpc-web";
import { MANAGER_PROTO } from "../proto/_manager_proto.ts";
import { seededBytes, startManager, tcpEchoServer } from "./manager_fixture.ts";

const root = protobuf.parse(MANAGER_PROTO).root;
const service = root.lookupService("tp.manager.v1.Manager");

/** A nice-grpc ServiceDefinition for every method of the .proto. */
function definition() {
  const def: Record<string, unknown> = {};
  for (const m of Object.values(service.methods)) {
    const req = root.lookupType(`tp.manager.v1.${m.requestType}`);
    const res = root.lookupType(`tp.manager.v1.${m.responseType}`);
    const name = m.name[0]!.toLowerCase() + m.name.slice(1);
    def[name] = {
      path: `/tp.manager.v1.Manager/${m.name}`,
      requestStream: m.requestStream === true,
      responseStream: m.responseStream === true,
      requestSerialize: (v: Record<string, unknown>) => req.encode(req.fromObject(v)).finish(),
      requestDeserialize: (b: Uint8Array) => req.toObject(req.decode(b)),
      responseSerialize: (v: Record<string, unknown>) => res.encode(res.fromObject(v)).finish(),
      responseDeserialize: (b: Uint8Array) => res.toObject(res.decode(b), { defaults: true, longs: Number }),
      options: {},
    };
  }
  return def;
}

/** A DNS server for the test: answers every query with its own bytes, QR bit set. */
async function fakeDns() {
  const sock = dgram.createSocket("udp4");
  sock.on("message", (msg: Uint8Array, r: { address: string; port: number }) => {
    const a = new Uint8Array(msg);
    a[2]! |= 0x80;
    sock.send(a, r.port, r.address);
  });
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  return { port: sock.address().port, close: () => new Promise<void>((r) => sock.close(() => r())) };
}

Deno.test("nice-grpc-web's fetch transport: arrive, cluster info, a DNS query and a tunnel stream work", async () => {
  const dns = await fakeDns();
  const echo = tcpEchoServer();
  const m = await startManager({ token: "abc", dnsServer: { host: "127.0.0.1", port: dns.port } });
  // deno-lint-ignore no-explicit-any
  const client = createClient(definition() as any, createChannel(m.url, FetchTransport())) as any;
  const metadata = { authorization: "Bearer abc" };
  try {
    const arrived = await client.arrive({ clientName: "nice", namespace: "default" }, { metadata });
    assert.equal(typeof arrived.sessionId, "string");
    assert.deepEqual(arrived.clusterInfo.podSubnets, ["127.0.0.0/8"]);
    const info = await client.getClusterInfo({ sessionId: arrived.sessionId }, { metadata });
    assert.equal(info.clusterDomain, "cluster.local");

    const query = new Uint8Array([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1]);
    const dnsRes = await client.dns({ sessionId: arrived.sessionId, query }, { metadata });
    assert.equal(dnsRes.answer[0], 0x12);
    assert.equal(dnsRes.answer[2] & 0x80, 0x80);

    const payload = seededBytes(100_000, 3);
    const frames = async function* () {
      yield {
        open: {
          sessionId: arrived.sessionId,
          protocol: 1,
          source: { ip: "10.0.0.1", port: 1 },
          destination: { ip: "127.0.0.1", port: echo.port },
        },
      };
      yield { data: payload };
      yield { fin: {} };
    };
    const got: number[] = [];
    let dial: { code: number } | undefined;
    let fin = false;
    for await (const f of client.tunnel(frames(), { metadata })) {
      if (f.dial) dial = f.dial;
      if (f.data) got.push(...f.data);
      if (f.fin) fin = true;
    }
    assert.equal(dial?.code, 1);
    assert.ok(fin);
    assert.deepEqual(new Uint8Array(got), payload);
    await client.depart({ sessionId: arrived.sessionId }, { metadata });
  } finally {
    await m.close();
    await echo.close();
    await dns.close();
  }
});
