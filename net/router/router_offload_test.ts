import assert from "node:assert/strict";
import { MemoryTun } from "../../ffi/tun_memory.ts";
import type { TunDevice } from "../../ffi/tun.ts";
import { classify, PacketInfo, parseTcp, type TcpRepr, TcpSegment, verifyChecksum } from "../wire/mod.ts";
import { ACK, APP_ISN, Harness, pattern, seq, settle, SocketLog, SYN } from "./_harness.ts";

/** A device like a Linux TUN with offload: MTU 1500, but it takes (and hands over) TCP packets up to 64 KiB. */
function offloadDevice(): { tun: MemoryTun; dev: TunDevice } {
  const tun = new MemoryTun({ mtu: 65535 });
  const dev: TunDevice = {
    name: "off0",
    mtu: 1500,
    batchSize: tun.batchSize,
    stats: tun.stats,
    read: () => tun.read(),
    write: (p) => tun.write(p),
    close: () => tun.close(),
  };
  return { tun, dev };
}

function parseLoose(p: Uint8Array): TcpRepr {
  const info = new PacketInfo();
  assert.equal(classify(p, info, { verifyChecksums: false }), null);
  return parseTcp(new TcpSegment(p.subarray(info.transportOffset, info.ipLength)), null) as TcpRepr;
}

async function established(h: Harness): Promise<{ log: SocketLog; isn: number }> {
  h.owner.onTcp = (s) => s.accept();
  h.sendTcp({ seq: APP_ISN, flags: SYN, mss: 1000 });
  const [synAck] = await h.tun.waitWritten(1);
  const isn = parseLoose(synAck!).seq;
  h.sendTcp({ seq: seq(APP_ISN, 1), ack: seq(isn, 1) });
  await settle();
  return { log: new SocketLog(h.owner.sockets[0]!), isn };
}

Deno.test("Router with offload joins consecutive segments into super-packets and leaves their checksum to the device", async () => {
  const h = new Harness({ offload: true }, offloadDevice());
  try {
    const { log, isn } = await established(h);
    assert.equal(log.socket.write(pattern(30_000)), 30_000);
    const [first, ...rest] = await h.tun.waitWritten(1);
    assert.deepEqual(rest, []);
    const seg = parseLoose(first!);
    // The initial congestion window (RFC 5681: 10 segments here) goes out as one packet.
    assert.equal(seg.payload.length, 10_000);
    assert.equal(seg.seq, seq(isn, 1));
    assert.ok(first!.length > 1500);
    assert.equal((first![36]! << 8) | first![37]!, 0, "the TCP checksum is the device's to fill");
    assert.deepEqual(seg.payload, pattern(30_000).subarray(0, 10_000));
    // Acknowledged: the rest follows, in one or more super-packets, byte for byte.
    h.sendTcp({ seq: seq(APP_ISN, 1), ack: seq(isn, 10_001) });
    let got = [...seg.payload];
    for (let i = 0; i < 10 && got.length < 30_000; i++) {
      const more = (await h.tun.waitWritten(1)).map(parseLoose);
      got = got.concat(...more.map((s) => [...s.payload]));
      h.sendTcp({ seq: seq(APP_ISN, 1), ack: seq(more.at(-1)!.seq, more.at(-1)!.payload.length) });
    }
    assert.deepEqual(got, [...pattern(30_000)]);
  } finally {
    await h.close();
  }
});

Deno.test("Router with offload checksums a super-packet that stays within the MTU", async () => {
  const h = new Harness({ offload: true }, offloadDevice());
  try {
    const { log } = await established(h);
    log.socket.write(pattern(600));
    const [p] = await h.tun.waitWritten(1);
    assert.equal(parseLoose(p!).payload.length, 600);
    const info = new PacketInfo();
    assert.equal(classify(p!, info), null, "checksums verify");
    assert.ok(verifyChecksum(p!, 0, 20));
  } finally {
    await h.close();
  }
});

Deno.test("Router takes an inbound TCP super-packet (64 KiB GSO from the kernel) as one segment", async () => {
  const h = new Harness({ offload: true }, offloadDevice());
  try {
    const { log, isn } = await established(h);
    h.sendTcp({ seq: seq(APP_ISN, 1), ack: seq(isn, 1), flags: ACK, payload: pattern(60_000) });
    await settle();
    assert.equal(log.data.length, 60_000);
    assert.deepEqual(log.data, [...pattern(60_000)]);
    assert.deepEqual(h.router.stats().drops, {});
  } finally {
    await h.close();
  }
});
