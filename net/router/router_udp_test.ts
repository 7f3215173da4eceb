import assert from "node:assert/strict";
import { APP4, Harness, pattern, settle, SVC4 } from "./_harness.ts";

Deno.test("Router holds a UDP flow's first datagrams until the owner accepts, then delivers them in order", async () => {
  const h = new Harness();
  try {
    const got: number[][] = [];
    h.tun.inject(h.udpPacket(pattern(10)), h.udpPacket(pattern(20, 1)));
    await settle();
    assert.equal(h.owner.flows.length, 1, "one flow for one 5-tuple");
    const f = h.owner.flows[0]!;
    assert.deepEqual(f.flow, { family: 4, src: "198.18.0.1", srcPort: 40000, dst: "198.19.0.10", dstPort: 53 });
    f.onDatagram = (d) => got.push([...d]);
    assert.deepEqual(got, []);
    f.accept();
    assert.deepEqual(got, [[...pattern(10)], [...pattern(20, 1)]]);
    h.tun.inject(h.udpPacket(pattern(5, 2)));
    await settle();
    assert.deepEqual(got.at(-1), [...pattern(5, 2)]);
    // Outbound: addresses and ports swapped.
    f.send(pattern(30, 3));
    const [out] = await h.recv();
    assert.equal(out!.src, SVC4);
    assert.equal(out!.dst, APP4);
    assert.deepEqual(out!.udp, { srcPort: 53, dstPort: 40000, payload: pattern(30, 3) });
  } finally {
    await h.close();
  }
});

Deno.test("Router answers a refused UDP flow with ICMP port unreachable quoting its datagram", async () => {
  const h = new Harness();
  try {
    let closed = false;
    h.owner.onUdp = (f) => {
      f.onClose = () => (closed = true);
      f.refuse("refused");
    };
    const d = h.udpPacket(pattern(12));
    h.tun.inject(d);
    const [icmp] = await h.recv();
    assert.deepEqual([icmp!.icmp!.type, icmp!.icmp!.code], [3, 3]);
    assert.deepEqual(icmp!.icmp!.quote, d);
    assert.ok(closed);
    assert.equal(h.router.stats().udpFlows, 0);
  } finally {
    await h.close();
  }
});

Deno.test("Router ends an idle UDP flow after udpIdleMs and counts it", async () => {
  const h = new Harness({ udpIdleMs: 5000 });
  try {
    let closed = false;
    h.owner.onUdp = (f) => {
      f.onClose = () => (closed = true);
      f.accept();
    };
    h.tun.inject(h.udpPacket(pattern(1)));
    await settle();
    await h.advance(4000);
    assert.ok(!closed);
    h.tun.inject(h.udpPacket(pattern(1))); // activity restarts the idle time
    await h.advance(4000);
    assert.ok(!closed);
    await h.advance(1500);
    assert.ok(closed);
    assert.equal(h.router.stats().drops["udpIdleExpired"], 1);
    assert.equal(h.router.stats().udpFlows, 0);
  } finally {
    await h.close();
  }
});

Deno.test("Router drops datagrams beyond the UDP flow limit, counted", async () => {
  const h = new Harness({ maxUdpFlows: 1 });
  try {
    h.tun.inject(h.udpPacket(pattern(1), { appPort: 1 }), h.udpPacket(pattern(1), { appPort: 2 }));
    await settle();
    assert.equal(h.owner.flows.length, 1);
    assert.equal(h.router.stats().drops["udpFlowLimit"], 1);
  } finally {
    await h.close();
  }
});

Deno.test("Router: a UDP flow over IPv6 round-trips", async () => {
  const h = new Harness();
  try {
    const got: number[][] = [];
    h.owner.onUdp = (f) => {
      f.onDatagram = (d) => {
        got.push([...d]);
        f.send(d);
      };
      f.accept();
    };
    h.tun.inject(h.udpPacket(pattern(40), { family: 6 }));
    const [out] = await h.recv();
    assert.equal(out!.version, 6);
    assert.deepEqual(out!.udp!.payload, pattern(40));
    assert.equal(h.owner.flows[0]!.flow.src, "2001:db8:1::1");
  } finally {
    await h.close();
  }
});

Deno.test("Router counts an outbound datagram for a flow not yet accepted or already ended (udpOutboundNoFlow)", async () => {
  const h = new Harness();
  try {
    h.tun.inject(h.udpPacket(pattern(1)));
    await settle();
    const f = h.owner.flows[0]!;
    f.send(pattern(8)); // still pending
    f.accept();
    f.send(pattern(8, 1));
    f.close();
    f.send(pattern(8, 2)); // ended
    const out = await h.drain();
    assert.deepEqual(out.map((o) => o.udp!.payload), [pattern(8, 1)], "only the open flow's datagram goes out");
    assert.equal(h.router.stats().drops["udpOutboundNoFlow"], 2);
  } finally {
    await h.close();
  }
});

Deno.test("Router counts the held datagrams of a pending flow that is refused, closed or expires (udpHeldDiscarded)", async () => {
  const h = new Harness({ udpIdleMs: 5000 });
  try {
    const burst = (appPort: number, n: number) => {
      for (let i = 0; i < n; i++) h.tun.inject(h.udpPacket(pattern(4, i), { appPort }));
    };
    burst(1, 3);
    burst(2, 2);
    burst(3, 1);
    await settle();
    const [refused, closed] = h.owner.flows;
    refused!.refuse("refused");
    assert.equal(h.router.stats().drops["udpHeldDiscarded"], 3);
    closed!.close();
    assert.equal(h.router.stats().drops["udpHeldDiscarded"], 5);
    await h.advance(5000); // the third, never answered, expires
    assert.equal(h.router.stats().drops["udpHeldDiscarded"], 6);
    assert.equal(h.router.stats().udp.heldDiscarded, 6);
    assert.equal(h.router.stats().udpFlows, 0);
  } finally {
    await h.close();
  }
});

Deno.test("Router counts the held datagrams an owner loses by closing the flow while taking them", async () => {
  const h = new Harness();
  try {
    for (let i = 0; i < 4; i++) h.tun.inject(h.udpPacket(pattern(4, i)));
    await settle();
    const f = h.owner.flows[0]!;
    const got: number[][] = [];
    f.onDatagram = (d) => {
      got.push([...d]);
      f.close();
    };
    f.accept();
    assert.deepEqual(got, [[...pattern(4, 0)]]);
    assert.equal(h.router.stats().drops["udpHeldDiscarded"], 3);
  } finally {
    await h.close();
  }
});
