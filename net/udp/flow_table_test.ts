import assert from "node:assert/strict";
import { buildUdpPacket, buildUnreachable, classify, ipv4FromString, ipv6FromString, PacketInfo } from "../wire/mod.ts";
import { UDP_QUOTE_LEN, UDP_REPLIED_TIMEOUT_MS, UDP_UNREPLIED_TIMEOUT_MS, UdpFlowTable } from "./flow_table.ts";

const APP = ipv4FromString("198.18.0.1");
const SVC = ipv4FromString("198.19.0.10");
const info = new PacketInfo();

/** An inbound datagram from the app's port to the service's port 53, classified into `info`. */
function datagram(
  appPort: number,
  text: string,
  src: number | Uint8Array = APP,
  dst: number | Uint8Array = SVC,
): Uint8Array {
  const out = new Uint8Array(1600);
  const n = buildUdpPacket(out, { src, dst } as never, {
    srcPort: appPort,
    dstPort: 53,
    payload: new TextEncoder().encode(text),
  });
  const packet = out.subarray(0, n);
  assert.equal(classify(packet, info), null);
  return packet;
}
const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("inbound() creates a pending flow on the first datagram and holds it", () => {
  const table = new UdpFlowTable();
  assert.equal(table.inbound(datagram(4000, "q1"), info, 0), "created");
  const flow = table.flow!;
  assert.equal(flow.state, "pending");
  assert.equal(flow.app, APP);
  assert.equal(flow.remote, SVC);
  assert.deepEqual([flow.appPort, flow.remotePort], [4000, 53]);
  assert.deepEqual(flow.outboundHeader, { src: SVC, dst: APP });
  assert.equal(table.inbound(datagram(4000, "q2"), info, 1), "held");
  assert.equal(table.flow, flow);
  assert.equal(table.size, 1);
  assert.deepEqual([flow.inboundDatagrams, flow.inboundBytes], [2, 4]);
  assert.equal(table.counters.created, 1);
});

Deno.test("accept() opens the flow and returns the held datagrams in order; later ones are delivered", () => {
  const table = new UdpFlowTable<string>();
  table.inbound(datagram(4000, "q1"), info, 0);
  const packet = datagram(4000, "q2");
  table.inbound(packet, info, 0);
  packet.fill(0); // the table copied what it holds
  const flow = table.flow!;
  assert.deepEqual(table.accept(flow, "stream-1").map(text), ["q1", "q2"]);
  assert.equal(flow.state, "open");
  assert.equal(flow.owner, "stream-1");
  assert.equal(table.inbound(datagram(4000, "q3"), info, 1), "deliver");
  assert.equal(text(datagram(4000, "q3").subarray(info.payloadOffset, info.payloadEnd)), "q3");
  assert.deepEqual(table.accept(flow), [], "a second accept is a no-op");
  assert.equal(table.counters.accepted, 1);
});

Deno.test("refuse() removes a pending flow and returns the first datagram to quote in a port unreachable", () => {
  const table = new UdpFlowTable();
  const first = datagram(4000, "q1");
  table.inbound(first, info, 0);
  table.inbound(datagram(4000, "q2"), info, 0);
  const flow = table.flow!;
  const quote = table.refuse(flow);
  assert.deepEqual(quote, first);
  assert.equal(table.size, 0);
  assert.equal(table.refuse(flow), null);
  const out = new Uint8Array(1500);
  const n = buildUnreachable(out, quote!, { reason: "port" });
  assert.equal(classify(out.subarray(0, n), info), null);
  assert.deepEqual([info.icmpType, info.icmpCode, info.dst4], [3, 3, APP]);
  assert.equal(table.counters.refused, 1);
});

Deno.test("refuse() of an open flow quotes its latest datagram, cut to 548 bytes", () => {
  const table = new UdpFlowTable();
  table.inbound(datagram(4000, "q1"), info, 0);
  const flow = table.flow!;
  table.accept(flow);
  const big = datagram(4000, "x".repeat(1000));
  table.inbound(big, info, 1);
  assert.deepEqual(table.refuse(flow), big.subarray(0, UDP_QUOTE_LEN));
});

Deno.test("inbound() holds at most maxHeld datagrams of a pending flow and counts the rest", () => {
  const table = new UdpFlowTable({ maxHeld: 2 });
  table.inbound(datagram(4000, "a"), info, 0);
  table.inbound(datagram(4000, "b"), info, 0);
  assert.equal(table.inbound(datagram(4000, "c"), info, 0), "heldFull");
  assert.equal(table.flow!.heldDropped, 1);
  assert.equal(table.counters.heldDropped, 1);
  assert.deepEqual(table.accept(table.flow!).map(text), ["a", "b"]);
});

Deno.test("inbound() refuses a new flow when the table is full and counts it", () => {
  const table = new UdpFlowTable({ maxFlows: 2 });
  assert.equal(table.inbound(datagram(1, "a"), info, 0), "created");
  assert.equal(table.inbound(datagram(2, "b"), info, 0), "created");
  assert.equal(table.inbound(datagram(3, "c"), info, 0), "tableFull");
  assert.equal(table.flow, null);
  assert.equal(table.counters.tableFull, 1);
  assert.equal(table.inbound(datagram(1, "a again"), info, 0), "held", "existing flows still pass");
  const second = datagram(2, "b");
  assert.equal(table.close(table.get(info.flowKey(second))!), true);
  assert.equal(table.inbound(datagram(3, "c"), info, 0), "created");
});

Deno.test("flows are keyed by the whole 5-tuple, both families", () => {
  const table = new UdpFlowTable();
  const a6 = ipv6FromString("fd00::1"), b6 = ipv6FromString("fd00::2");
  table.inbound(datagram(4000, "v4"), info, 0);
  table.inbound(datagram(4001, "other port"), info, 0);
  table.inbound(datagram(4000, "other dst", APP, SVC + 1), info, 0);
  assert.equal(table.inbound(datagram(4000, "v6", a6, b6), info, 0), "created");
  assert.deepEqual(table.flow!.app, a6);
  assert.equal(table.inbound(datagram(4000, "v6 again", a6, b6), info, 0), "held");
  assert.equal(table.size, 4);
});

Deno.test("outbound() counts datagrams to the app only on open flows", () => {
  const table = new UdpFlowTable();
  table.inbound(datagram(4000, "q"), info, 0);
  const flow = table.flow!;
  assert.equal(table.outbound(flow, 10, 1), false);
  table.accept(flow);
  assert.equal(table.outbound(flow, 10, 2), true);
  assert.equal(table.outbound(flow, 5, 3), true);
  assert.deepEqual([flow.outboundDatagrams, flow.outboundBytes, flow.replied, flow.lastActive], [2, 15, true, 3]);
});

Deno.test("expire() removes a flow that never got a reply after 30 s, not before", () => {
  const table = new UdpFlowTable();
  table.inbound(datagram(4000, "q"), info, 1000);
  assert.equal(table.nextDeadline(), 1000 + UDP_UNREPLIED_TIMEOUT_MS);
  assert.deepEqual(table.expire(1000 + UDP_UNREPLIED_TIMEOUT_MS - 1), []);
  const gone = table.expire(1000 + UDP_UNREPLIED_TIMEOUT_MS);
  assert.equal(gone.length, 1);
  assert.equal(table.size, 0);
  assert.equal(table.counters.expired, 1);
  assert.equal(table.nextDeadline(), null);
});

Deno.test("expire() keeps a replied flow for 120 s after its last datagram", () => {
  const table = new UdpFlowTable();
  table.inbound(datagram(4000, "q"), info, 0);
  const flow = table.flow!;
  table.accept(flow);
  table.outbound(flow, 1, 10_000);
  assert.equal(table.nextDeadline(), 10_000 + UDP_REPLIED_TIMEOUT_MS);
  assert.deepEqual(table.expire(10_000 + UDP_UNREPLIED_TIMEOUT_MS), []);
  assert.deepEqual(table.expire(10_000 + UDP_REPLIED_TIMEOUT_MS - 1), []);
  assert.deepEqual(table.expire(10_000 + UDP_REPLIED_TIMEOUT_MS), [flow]);
});

Deno.test("expire() finds only the idle flows among many, and nextDeadline() is never late", () => {
  const table = new UdpFlowTable({ maxFlows: 10_000 });
  for (let i = 0; i < 1000; i++) table.inbound(datagram(1000 + i, "q"), info, i);
  for (let i = 0; i < 1000; i += 2) table.inbound(datagram(1000 + i, "again"), info, 20_000);
  const idle = table.expire(UDP_UNREPLIED_TIMEOUT_MS + 999);
  assert.equal(idle.length, 500);
  assert.ok(idle.every((f) => f.appPort % 2 === 1));
  const deadline = table.nextDeadline()!;
  assert.ok(deadline > UDP_UNREPLIED_TIMEOUT_MS + 999, "after the last expire, so a driver does not spin");
  assert.ok(deadline <= 20_000 + UDP_UNREPLIED_TIMEOUT_MS);
  assert.deepEqual(table.expire(deadline - 1), []);
  assert.equal(table.expire(20_000 + UDP_UNREPLIED_TIMEOUT_MS).length, 500);
});

Deno.test("expire() with a driver that sleeps until nextDeadline() expires every flow on time", () => {
  const table = new UdpFlowTable();
  table.inbound(datagram(1, "a"), info, 0);
  const replied = table.flow!;
  table.accept(replied);
  table.inbound(datagram(2, "b"), info, 5_000);
  let now = 0, wakeups = 0;
  const expiredAt = new Map<number, number>();
  for (let t = 0; t <= 100_000; t += 10_000) table.outbound(replied, 1, t); // replied flow active until 100 s
  for (let d = table.nextDeadline(); d !== null; d = table.nextDeadline()) {
    assert.ok(d > now || wakeups === 0, `deadline ${d} not after ${now}`);
    now = d;
    wakeups++;
    for (const f of table.expire(now)) expiredAt.set(f.appPort, now);
  }
  assert.equal(expiredAt.get(2), 5_000 + UDP_UNREPLIED_TIMEOUT_MS);
  assert.equal(expiredAt.get(1), 100_000 + UDP_REPLIED_TIMEOUT_MS);
  assert.ok(wakeups <= 4, `${wakeups} wakeups`);
});

Deno.test("close() removes a flow once", () => {
  const table = new UdpFlowTable();
  table.inbound(datagram(4000, "q"), info, 0);
  const flow = table.flow!;
  assert.equal(table.close(flow), true);
  assert.equal(table.close(flow), false);
  assert.equal(table.outbound(flow, 1, 0), false);
  assert.equal(table.counters.closed, 1);
  assert.equal(table.inbound(datagram(4000, "q"), info, 0), "created", "a new flow replaces it");
});

Deno.test("UdpFlowTable() rejects nonsensical options", () => {
  assert.throws(() => new UdpFlowTable({ maxFlows: 0 }), RangeError);
  assert.throws(() => new UdpFlowTable({ unrepliedTimeoutMs: 10, repliedTimeoutMs: 5 }), RangeError);
});
