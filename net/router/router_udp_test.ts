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
