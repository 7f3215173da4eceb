import assert from "node:assert/strict";
import type { TcpRepr } from "../wire/tcp_repr.ts";
import { ACK, bytes, cloneSeg, established, FIN, peerSyn, RST, SYN, testOptions } from "./_fixtures.ts";
import type { TcpConnection } from "./connection.ts";
import { TcpEndpoint, type TcpEndpointOptions } from "./endpoint.ts";
import { TcpEvent } from "./options.ts";
import { seqAdd } from "./seq.ts";

type Flow = { name: string };

function endpoint(extra: Partial<TcpEndpointOptions<Flow>> = {}) {
  const out: [Flow, TcpRepr][] = [];
  const events: [TcpConnection, number][] = [];
  const ep = new TcpEndpoint<Flow>({
    ...testOptions(),
    emit: (f, s) => out.push([f, cloneSeg(s)]),
    onEvents: (c, ev) => events.push([c, ev]),
    ...extra,
  });
  return { ep, out, events };
}

Deno.test("TcpEndpoint answers a segment that matches no connection with an RST (RFC 9293 3.10.7.1)", () => {
  const { ep, out } = endpoint();
  const flow = { name: "a" };
  assert.equal(ep.input("a", flow, { ...peerSyn(), flags: ACK, ack: 5 }, 0), "reset-sent");
  assert.equal(out.length, 1);
  assert.equal(out[0]![0], flow);
  assert.equal(out[0]![1].flags, RST);
  assert.equal(ep.input("a", flow, { ...peerSyn(), flags: RST }, 0), "dropped");
  assert.equal(ep.counters.unmatchedSegments, 2);
  assert.equal(ep.size, 0);
});

Deno.test("TcpEndpoint holds a SYN, raises Incoming, and an accept() inside onEvents sends the SYN-ACK in the same poll", () => {
  const out: TcpRepr[] = [];
  const ep = new TcpEndpoint<Flow>({
    ...testOptions(),
    emit: (_f, s) => out.push(cloneSeg(s)),
    onEvents: (c, ev) => {
      if (ev & TcpEvent.Incoming) c.accept();
    },
  });
  assert.equal(ep.input("k", { name: "k" }, peerSyn(), 0), "incoming");
  assert.equal(out.length, 0); // nothing before poll()
  ep.poll(0);
  assert.equal(out.length, 1);
  assert.equal(out[0]!.flags, SYN | ACK);
  assert.equal(ep.get("k")!.state, "SYN-RECEIVED");
  assert.equal(ep.nextDeadline(), 1000); // the SYN-ACK's retransmission timer
});

Deno.test("TcpEndpoint refuses SYNs beyond maxConnections with an RST and counts them", () => {
  const { ep, out } = endpoint({ maxConnections: 2 });
  ep.input("1", { name: "1" }, peerSyn({ srcPort: 1 }), 0);
  ep.input("2", { name: "2" }, peerSyn({ srcPort: 2 }), 0);
  assert.equal(ep.input("3", { name: "3" }, peerSyn({ srcPort: 3 }), 0), "reset-sent");
  assert.equal(out.at(-1)![1].flags, RST | ACK);
  assert.equal(ep.counters.connectionLimitDrops, 1);
  assert.equal(ep.size, 2);
});

Deno.test("TcpEndpoint drives timers from poll(): a held SYN times out and the connection leaves the table", () => {
  const { ep, out, events } = endpoint({ heldSynTimeoutMs: 100 });
  ep.input("k", { name: "k" }, peerSyn(), 0);
  assert.equal(ep.poll(0), 100);
  assert.equal(ep.poll(100), Number.POSITIVE_INFINITY);
  assert.equal(out.at(-1)![1].flags, RST | ACK);
  assert.equal(ep.size, 0);
  assert.ok(events.at(-1)![1] & TcpEvent.Closed);
  assert.equal(ep.counters.heldSynTimeouts, 1);
});

Deno.test("TcpEndpoint: a new SYN above the old sequence space reopens a TIME-WAIT pair (RFC 6191)", () => {
  const { ep, out } = endpoint();
  const flow = { name: "k" };
  // Our side closes first: accept, handshake, shutdownWrite, peer ACKs FIN and sends its own.
  ep.input("k", flow, peerSyn(), 0);
  const conn = ep.get("k")!;
  conn.accept();
  ep.poll(0);
  const synAck = out.at(-1)![1];
  const peer1 = seqAdd(synAck.ack, 0);
  ep.input("k", flow, { ...peerSyn(), flags: ACK, seq: peer1, ack: seqAdd(synAck.seq, 1) }, 1);
  conn.shutdownWrite();
  ep.poll(1);
  ep.input("k", flow, { ...peerSyn(), flags: FIN | ACK, seq: peer1, ack: seqAdd(synAck.seq, 2) }, 2);
  ep.poll(2);
  assert.equal(conn.state, "TIME-WAIT");
  assert.equal(ep.input("k", flow, peerSyn({ seq: seqAdd(peer1, 1000) }), 3), "incoming");
  assert.notEqual(ep.get("k"), conn);
  assert.equal(ep.get("k")!.state, "SYN-HELD");
});

Deno.test("two TcpEndpoints move data both ways and close (active open through connect())", () => {
  const wire: { toB: boolean; seg: TcpRepr }[] = [];
  const got = { a: [] as number[], b: [] as number[] };
  const mk = (side: "a" | "b", toB: boolean) =>
    new TcpEndpoint<Flow>({
      ...testOptions({ random: () => (side === "a" ? 1 : 0xffff_fff0) }),
      emit: (_f, s) => wire.push({ toB, seg: cloneSeg(s) }),
      onEvents: (c, ev) => {
        if (ev & TcpEvent.Incoming) c.accept();
        if (ev & TcpEvent.Readable) {
          const buf = new Uint8Array(c.readable);
          c.readInto(buf);
          got[side].push(...buf);
        }
        if (ev & TcpEvent.PeerFin) c.shutdownWrite();
      },
    });
  const a = mk("a", true);
  const b = mk("b", false);
  const conn = a.connect("x", { name: "x" }, { localPort: 1000, remotePort: 80 });
  conn.write(bytes(5000));
  let now = 0;
  for (let i = 0; i < 100 && (a.size > 0 || b.size > 0); i++) {
    a.poll(now);
    b.poll(now);
    const batch = wire.splice(0);
    for (const p of batch) (p.toB ? b : a).input("x", { name: "x" }, p.seg, now);
    if (batch.length === 0) now = Math.min(a.nextDeadline(), b.nextDeadline());
    if (conn.state === "ESTABLISHED" && b.get("x")?.state === "ESTABLISHED" && conn.info().unackedBytes === 0) {
      b.get("x")!.write(bytes(3000, 5));
      conn.shutdownWrite();
    }
  }
  assert.deepEqual(got.b, [...bytes(5000)]);
  assert.deepEqual(got.a, [...bytes(3000, 5)]);
  assert.equal(a.size, 0);
  assert.equal(b.size, 0);
});

Deno.test("RFC 9293 3.8.4: keepalive probes an idle connection and times it out when unanswered", () => {
  const h = established({ keepalive: { idleMs: 10_000, intervalMs: 1000, probes: 2 } });
  h.fire();
  assert.equal(h.now, 10_000);
  const p = h.one();
  assert.equal(p.seq, seqAdd(p.seq, 0));
  assert.equal(p.payload.length, 0);
  // An answer resets the idle timer.
  h.send();
  assert.equal(h.conn.nextDeadline(), 20_000);
  h.fire();
  h.one();
  h.fire();
  h.one();
  h.fire();
  assert.equal(h.conn.state, "CLOSED");
  assert.equal(h.conn.error, "timeout");
  assert.equal(h.conn.counters.keepaliveProbes, 3);
});
