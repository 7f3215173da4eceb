/**
 * The router's bound on connections in progress (SYN-HELD and SYN-RECEIVED, `_in_progress.ts`): a SYN flood is
 * answered with RSTs past the bound, a connection to another destination still gets in, and a place is freed when a
 * connection is established, refused, times out or is reset. MemoryTun and the harness's fake clock.
 */
import assert from "node:assert/strict";
import { ipv4FromString } from "../wire/mod.ts";
import { ACK, APP_ISN, Harness, RST, seq, settle, SocketLog, SVC4, SYN } from "./_harness.ts";

const OTHER4 = ipv4FromString("198.19.0.20");

/** `n` SYNs to `svc` from app ports 30000 + from.. */
function synFlood(h: Harness, n: number, from = 0, svc = SVC4): void {
  for (let i = 0; i < n; i++) h.sendTcp({ seq: APP_ISN, flags: SYN }, { appPort: 30000 + from + i, svc });
}

Deno.test("Router answers SYNs past maxConnectionsInProgress with RST, counts them, and opens no connection", async () => {
  const h = new Harness({ maxConnectionsInProgress: 8 });
  try {
    synFlood(h, 20);
    const rsts = await h.recv(12);
    assert.equal(rsts.length, 12);
    for (const [i, r] of rsts.entries()) {
      assert.equal(r.tcp!.flags, RST | ACK);
      assert.equal(r.tcp!.ack, seq(APP_ISN, 1));
      assert.equal(r.tcp!.dstPort, 30008 + i, "the excess, in order: the first 8 hold their places");
    }
    const st = h.router.stats();
    assert.equal(st.drops["tcpInProgressLimit"], 12);
    assert.equal(st.tcpInProgress, 8);
    assert.equal(st.tcpConnections, 8);
    assert.equal(h.owner.sockets.length, 8, "the owner dials only what was admitted");
  } finally {
    await h.close();
  }
});

Deno.test("Router lets a SYN to a quieter destination in during a flood at another, resetting the flood's oldest", async () => {
  const h = new Harness({ maxConnectionsInProgress: 8 });
  try {
    synFlood(h, 8);
    await settle();
    const oldest = new SocketLog(h.owner.sockets[0]!);
    h.owner.onTcp = (s) => s.accept(); // the owner dials the other destination at once
    h.sendTcp({ seq: APP_ISN, flags: SYN }, { appPort: 41000, svc: OTHER4 });
    const out = await h.recv(2);
    const rst = out.find((o) => o.tcp!.flags & RST)!;
    assert.equal(rst.tcp!.dstPort, 30000, "the flood's oldest SYN is answered with RST");
    const synAck = out.find((o) => o.tcp!.flags === (SYN | ACK))!;
    assert.deepEqual([synAck.src, synAck.tcp!.dstPort], [OTHER4, 41000], "the other destination's SYN is answered");
    assert.deepEqual([oldest.reset, oldest.closed], ["aborted", true], "the owner hears of the evicted one");
    // The app completes its handshake: the connection is established and leaves the table of those in progress.
    h.sendTcp({ seq: seq(APP_ISN, 1), ack: seq(synAck.tcp!.seq, 1) }, { appPort: 41000, svc: OTHER4 });
    await settle();
    const st = h.router.stats();
    assert.equal(st.drops["tcpInProgressEvicted"], 1);
    assert.equal(st.tcpInProgress, 7);
    assert.equal(st.tcpConnections, 8);
    // More of the flood only fills the free place, then is refused: its destination is the busiest.
    h.owner.onTcp = () => {};
    synFlood(h, 3, 100);
    assert.deepEqual((await h.recv(2)).map((o) => [o.tcp!.flags, o.tcp!.dstPort]), [[RST | ACK, 30101], [
      RST | ACK,
      30102,
    ]]);
    assert.equal(h.router.stats().drops["tcpInProgressLimit"], 2);
  } finally {
    await h.close();
  }
});

Deno.test("Router frees a place in progress when a held SYN times out, is refused, or its SYN-ACK goes unanswered", async () => {
  const h = new Harness({ maxConnectionsInProgress: 3, tcp: { heldSynTimeoutMs: 5000, synRetries: 1 } });
  try {
    synFlood(h, 3);
    await settle();
    assert.equal(h.router.stats().tcpInProgress, 3);
    const [a, b, c] = h.owner.sockets;
    a!.refuse("refused");
    b!.accept(); // SYN-RECEIVED: still in progress until the app's ACK
    await settle();
    assert.equal(h.router.stats().tcpInProgress, 2);
    synFlood(h, 1, 10);
    await settle();
    assert.equal(h.router.stats().tcpInProgress, 3, "the refused one's place is taken");
    const held = new SocketLog(c!);
    h.tun.takeWritten();
    await h.advance(5000); // the held SYNs (c and the new one) time out and are reset
    assert.equal(h.router.stats().tcpInProgress, 1, "b, whose SYN-ACK waits for an ACK");
    assert.equal(h.router.stats().tcp.heldSynTimeouts, 2);
    assert.deepEqual([held.reset, held.closed], ["timeout", true]);
    for (let i = 0; i < 3 && h.router.stats().tcpInProgress > 0; i++) await h.advance(10_000); // SYN-ACK retries
    assert.equal(h.router.stats().tcpInProgress, 0);
    assert.equal(h.router.stats().tcpConnections, 0);
    assert.equal(h.router.stats().drops["tcpInProgressLimit"], undefined);
  } finally {
    await h.close();
  }
});

Deno.test("Router counts connections in progress per IPv6 destination too", async () => {
  const h = new Harness({ maxConnectionsInProgress: 4 });
  try {
    for (let i = 0; i < 6; i++) h.sendTcp({ seq: APP_ISN, flags: SYN }, { family: 6, appPort: 30000 + i });
    await h.recv(2);
    assert.equal(h.router.stats().drops["tcpInProgressLimit"], 2);
    assert.equal(h.router.stats().tcpInProgress, 4);
  } finally {
    await h.close();
  }
});
