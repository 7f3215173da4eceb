import assert from "node:assert/strict";
import { MemoryTun } from "../../ffi/tun_memory.ts";
import { ipv4ToString } from "../wire/mod.ts";
import { ACK, APP4, APP_ISN, FIN, Harness, pattern, RST, seq, settle, SocketLog, SVC4, SVC6, SYN } from "./_harness.ts";

Deno.test("Router holds a SYN until the owner accepts, then answers with a SYN-ACK", async () => {
  const h = new Harness();
  try {
    h.sendTcp({ seq: APP_ISN, flags: SYN, mss: 1000 });
    await settle();
    assert.equal(h.owner.sockets.length, 1);
    const s = h.owner.sockets[0]!;
    assert.deepEqual(s.flow, { family: 4, src: "198.18.0.1", srcPort: 40000, dst: "198.19.0.10", dstPort: 8080 });
    assert.deepEqual(await h.drain(), [], "nothing is sent while the owner decides");
    s.accept();
    const [synAck] = await h.recv();
    assert.equal(synAck!.tcp!.flags, SYN | ACK);
    assert.equal(synAck!.tcp!.ack, seq(APP_ISN, 1));
    assert.equal(synAck!.src, SVC4);
    assert.equal(synAck!.dst, APP4);
    assert.equal(h.router.stats().tcpConnections, 1);
  } finally {
    await h.close();
  }
});

Deno.test("Router answers a refused SYN with an RST and forgets the connection", async () => {
  const h = new Harness();
  try {
    h.owner.onTcp = (s) => s.refuse("refused");
    h.sendTcp({ seq: APP_ISN, flags: SYN });
    const [rst] = await h.recv();
    assert.equal(rst!.tcp!.flags, RST | ACK);
    assert.equal(rst!.tcp!.ack, seq(APP_ISN, 1));
    await settle();
    assert.equal(h.router.stats().tcpConnections, 0);
    assert.equal(h.router.stats().tcp.connectionsRefused, 1);
  } finally {
    await h.close();
  }
});

for (
  const [reason, family, type, code] of [
    ["unreachable", 4, 3, 1],
    ["timeout", 4, 3, 1],
    ["denied", 4, 3, 13],
    ["unreachable", 6, 1, 3],
    ["denied", 6, 1, 1],
  ] as const
) {
  Deno.test(`Router answers a SYN refused as "${reason}" with ICMPv${family === 4 ? 4 : 6} type ${type} code ${code} quoting it`, async () => {
    const h = new Harness();
    try {
      let closed = false;
      h.owner.onTcp = (s) => {
        s.onClose = () => (closed = true);
        s.refuse(reason);
      };
      const syn = h.tcpPacket({ seq: APP_ISN, flags: SYN }, { family });
      h.tun.inject(syn);
      const [icmp] = await h.recv();
      assert.equal(icmp!.version, family);
      assert.deepEqual([icmp!.icmp!.type, icmp!.icmp!.code], [type, code]);
      assert.deepEqual(icmp!.icmp!.quote, syn);
      assert.deepEqual(icmp!.src, family === 4 ? SVC4 : SVC6);
      assert.deepEqual(await h.drain(), [], "no RST follows the ICMP error");
      assert.ok(closed);
      assert.equal(h.router.stats().tcpConnections, 0);
    } finally {
      await h.close();
    }
  });
}

Deno.test("Router carries data both ways, and backpressure closes and reopens the app's window", async () => {
  const h = new Harness({ tcp: { recvBufferLimit: 4000 } });
  try {
    const { log, isn } = await h.established();
    // Inbound: the owner takes the first segment, then refuses to take more.
    h.sendTcp({ seq: seq(APP_ISN, 1), ack: seq(isn, 1), payload: pattern(1000) });
    await settle();
    assert.deepEqual(log.data, [...pattern(1000)]);
    log.take = false;
    // The app sends while the window allows: every byte is acknowledged, and the window shrinks to zero.
    let next = 1000, window = 1;
    const sent = [...pattern(1000)];
    for (let i = 0; i < 10 && window > 0; i++) {
      const payload = pattern(1000, next);
      sent.push(...payload);
      h.sendTcp({ seq: seq(APP_ISN, 1 + next), ack: seq(isn, 1), payload });
      next += 1000;
      await h.advance(50); // the delayed ACK
      const ack = (await h.drain()).map((o) => o.tcp!).at(-1)!;
      assert.equal(ack.ack, seq(APP_ISN, 1 + next));
      window = ack.window;
    }
    assert.equal(window, 0, "the window is closed while the owner does not take the bytes");
    assert.equal(log.data.length, 1000);
    // Resume: the buffered bytes arrive in order and a window update reopens the window.
    log.take = true;
    log.socket.resume();
    await settle();
    assert.deepEqual(log.data, sent);
    const update = (await h.drain()).map((o) => o.tcp!).at(-1)!;
    assert.ok(update.window >= 3000, `window update ${update.window}`);
    // Outbound: what the owner writes reaches the app, and the app's ACK frees the send buffer.
    const taken = log.socket.write(pattern(2500, 7));
    assert.equal(taken, 2500);
    const segs = (await h.recv(3)).map((o) => o.tcp!);
    const got = segs.flatMap((s) => [...s.payload]);
    assert.deepEqual(got, [...pattern(2500, 7)]);
    assert.equal(segs[0]!.seq, seq(isn, 1));
  } finally {
    await h.close();
  }
});

Deno.test("Router: the app half-closes, the owner keeps writing, then closes its side", async () => {
  const h = new Harness();
  try {
    const { log, isn } = await h.established();
    h.sendTcp({ seq: seq(APP_ISN, 1), ack: seq(isn, 1), flags: ACK | FIN, payload: pattern(10) });
    await settle();
    assert.deepEqual(log.data, [...pattern(10)]);
    assert.ok(log.ended, "onEnd after the app's FIN");
    await h.drain();
    assert.equal(log.socket.write(pattern(100)), 100);
    const [data] = await h.recv();
    assert.equal(data!.tcp!.payload.length, 100);
    assert.equal(data!.tcp!.ack, seq(APP_ISN, 12), "the FIN is acknowledged");
    log.socket.end();
    const [fin] = await h.recv();
    assert.ok(fin!.tcp!.flags & FIN);
    assert.equal(fin!.tcp!.seq, seq(isn, 101));
    h.sendTcp({ seq: seq(APP_ISN, 12), ack: seq(isn, 102) });
    await settle();
    assert.ok(log.closed);
    assert.equal(log.reset, null);
    assert.equal(h.router.stats().tcpConnections, 0);
  } finally {
    await h.close();
  }
});

Deno.test("Router: the owner half-closes, the app keeps writing, then closes its side", async () => {
  const h = new Harness();
  try {
    const { log, isn } = await h.established();
    log.socket.end();
    const [fin] = await h.recv();
    assert.ok(fin!.tcp!.flags & FIN);
    h.sendTcp({ seq: seq(APP_ISN, 1), ack: seq(isn, 2), payload: pattern(300) });
    await settle();
    assert.deepEqual(log.data, [...pattern(300)]);
    assert.ok(!log.ended);
    h.sendTcp({ seq: seq(APP_ISN, 301), ack: seq(isn, 2), flags: ACK | FIN });
    await settle();
    assert.ok(log.ended);
    const ack = (await h.drain()).map((o) => o.tcp!).at(-1)!;
    assert.equal(ack.ack, seq(APP_ISN, 302));
    // TIME-WAIT (net/tcp's DEFAULTS.timeWaitMs), then the connection is gone.
    assert.ok(!log.closed);
    await h.advance(2500);
    assert.ok(log.closed);
    assert.equal(log.reset, null);
  } finally {
    await h.close();
  }
});

Deno.test("Router: an RST from the app resets the owner's socket", async () => {
  const h = new Harness();
  try {
    const { log, isn } = await h.established();
    h.sendTcp({ seq: seq(APP_ISN, 1), ack: seq(isn, 1), flags: RST });
    await settle();
    assert.equal(log.reset, "reset");
    assert.ok(log.closed);
    assert.equal(h.router.stats().tcpConnections, 0);
  } finally {
    await h.close();
  }
});

Deno.test("Router: the owner's abort() sends an RST to the app", async () => {
  const h = new Harness();
  try {
    const { log, isn } = await h.established();
    log.socket.abort();
    const [rst] = await h.recv();
    assert.ok(rst!.tcp!.flags & RST);
    assert.equal(rst!.tcp!.seq, seq(isn, 1));
    await settle();
    assert.ok(log.closed);
    assert.equal(h.router.stats().tcpConnections, 0);
  } finally {
    await h.close();
  }
});

Deno.test("Router refuses SYNs beyond the connection limit with an RST, counted", async () => {
  const h = new Harness({ maxConnections: 2 });
  try {
    for (const port of [40001, 40002, 40003]) h.sendTcp({ seq: APP_ISN, flags: SYN }, { appPort: port });
    const [rst] = await h.recv();
    assert.equal(rst!.tcp!.flags, RST | ACK);
    assert.equal(rst!.tcp!.dstPort, 40003);
    assert.equal(h.owner.sockets.length, 2);
    assert.equal(h.router.stats().drops["tcpConnectionLimit"], 1);
  } finally {
    await h.close();
  }
});

Deno.test("Router stop() resets every connection towards its app and closes every socket", async () => {
  const h = new Harness();
  const { log } = await h.established();
  h.router.stop();
  const [rst] = await h.recv();
  assert.ok(rst!.tcp!.flags & RST);
  assert.ok(log.closed);
  h.tun.close();
  await h.running;
  assert.equal(ipv4ToString(APP4), "198.18.0.1");
});

Deno.test("Router: a new SYN on a pair in TIME-WAIT opens a new connection", async () => {
  const h = new Harness();
  try {
    const { log, isn } = await h.established();
    log.socket.end();
    await h.recv();
    h.sendTcp({ seq: seq(APP_ISN, 1), ack: seq(isn, 2), flags: ACK | FIN });
    await settle();
    assert.ok(!log.closed, "TIME-WAIT");
    h.sendTcp({ seq: seq(APP_ISN, 100_000), flags: SYN });
    await settle();
    assert.ok(log.closed);
    assert.equal(h.owner.sockets.length, 2);
    void new SocketLog(h.owner.sockets[1]!);
  } finally {
    await h.close();
  }
});

Deno.test("Router takes a 60,000-byte segment from a device with MTU 65535 (as the daemon's TUN) as one segment", async () => {
  const h = new Harness({}, new MemoryTun({ mtu: 65535 }));
  try {
    const { log, isn } = await h.established();
    h.sendTcp({ seq: seq(APP_ISN, 1), ack: seq(isn, 1), flags: ACK, payload: pattern(60_000) });
    await settle();
    assert.deepEqual(log.data, [...pattern(60_000)]);
    assert.deepEqual(h.router.stats().drops, {});
  } finally {
    await h.close();
  }
});
