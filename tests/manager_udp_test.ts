import assert from "node:assert/strict";
import dgram from "node:dgram";
import { encodeFrame } from "../proto/grpc_web.ts";
import { encodeDataFrame, encodeTunnelFrame, methods, Protocol } from "../proto/messages.ts";
import { connect, DialCode, TunnelResetError } from "../proto/mod.ts";
import type { Manager } from "../manager/server.ts";
import { startManager, udpEchoServer } from "./manager_fixture.ts";

/** A UDP receiver on loopback that never answers: what it got, and from which port (the manager's socket). */
async function udpSink() {
  const sock = dgram.createSocket("udp4");
  const got: { data: Uint8Array; port: number }[] = [];
  let wake: (() => void) | undefined;
  sock.on("message", (data: Uint8Array, rinfo: { port: number }) => {
    got.push({ data, port: rinfo.port });
    wake?.();
  });
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  return {
    port: sock.address().port,
    got,
    /** Resolves once `n` datagrams arrived; rejects after 5 s. */
    async received(n: number): Promise<void> {
      const deadline = Date.now() + 5000;
      while (got.length < n) {
        if (Date.now() > deadline) throw new Error(`the sink got ${got.length} datagrams, not ${n}`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 100);
        });
      }
    },
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}

/** Waits (at most 5 s, checking every 20 ms) until the manager counted `n` datagrams dropped for `reason`. */
async function droppedFor(m: Manager, reason: string, n: number): Promise<void> {
  for (let i = 0; i < 250 && m.metrics.datagramsDropped.get({ reason }) < n; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(m.metrics.datagramsDropped.get({ reason }), n, `datagrams dropped for ${reason}`);
}

/**
 * Makes this machine's kernel deliver an ICMP destination unreachable (code 13, communication administratively
 * prohibited: a hard error, EHOSTUNREACH) for a UDP datagram from 127.0.0.1:`srcPort` to 127.0.0.1:`dstPort`,
 * as a filtering router would send it: a raw socket (root) from python3 (in scripts/install_deps).
 */
async function icmpProhibited(srcPort: number, dstPort: number): Promise<void> {
  if (Deno.uid() !== 0) throw new Error("this test sends a raw ICMP packet: run it as root");
  const script = `
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
lo = socket.inet_aton("127.0.0.1")
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 32, 0, 0x4000, 64, 17, 0, lo, lo)
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
quote = ip + struct.pack("!HHHH", int(sys.argv[1]), int(sys.argv[2]), 12, 0) + b"abcd"
icmp = struct.pack("!BBHI", 3, 13, 0, 0) + quote
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).sendto(icmp, ("127.0.0.1", 0))
`;
  const r = await new Deno.Command("python3", { args: ["-c", script, String(srcPort), String(dstPort)] }).output();
  assert.equal(r.code, 0, `python3: ${new TextDecoder().decode(r.stderr)}`);
}

/** A loopback UDP port nobody listens on: bound for a moment to learn a free one, then closed. */
async function closedUdpPort(host: string): Promise<number> {
  const s = await udpEchoServer(host);
  await s.close();
  return s.port;
}

for (const host of ["127.0.0.1", "::1"]) {
  Deno.test(`a UDP flow to a closed port on ${host} is reset with the code REFUSED`, async () => {
    const m = await startManager();
    const session = await connect(m.url, undefined);
    try {
      const t = await session.openTunnel({
        protocol: "udp",
        source: { ip: "10.0.0.1", port: 5353 },
        destination: { ip: host, port: await closedUdpPort(host) },
      });
      assert.equal(t.dial.code, DialCode.ok); // UDP has no handshake: the refusal comes with the first datagram
      t.write(new Uint8Array([1, 2, 3]));
      const error = await t.read().then(() => null, (e) => e);
      assert.ok(error instanceof TunnelResetError, `expected a reset, got ${error}`);
      assert.equal(error.code, DialCode.refused);
      assert.match(error.message, /refused/); // the words a client that predates the code reads
      const end = await t.ended;
      assert.equal(end.how, "reset");
      assert.match(end.reason, /refused/);
    } finally {
      await session.depart();
      await m.close();
    }
  });
}

Deno.test("50 UDP flows at once each get their echo (more than Deno's 32 blocking threads)", async () => {
  const m = await startManager();
  const echo = await udpEchoServer();
  const session = await connect(m.url, undefined);
  try {
    const tunnels = await Promise.all(Array.from({ length: 50 }, (_, i) =>
      session.openTunnel({
        protocol: "udp",
        source: { ip: "10.0.0.1", port: 10000 + i },
        destination: { ip: "127.0.0.1", port: echo.port },
      })));
    tunnels.forEach((t, i) => t.write(new Uint8Array([i, 0xa5])));
    const echoes = await Promise.all(tunnels.map((t) => t.read()));
    echoes.forEach((d, i) => assert.deepEqual(new Uint8Array(d!), new Uint8Array([i, 0xa5])));
    await Deno.stat("."); // the blocking thread pool is still free
    for (const t of tunnels) t.closeWrite();
    for (const t of tunnels) assert.equal((await t.ended).how, "closed");
  } finally {
    await session.depart();
    await echo.close();
    await m.close();
  }
});

Deno.test("a UDP flow without datagrams for udpIdleTimeoutMs ends with a FIN", async () => {
  const m = await startManager({ udpIdleTimeoutMs: 200 });
  const echo = await udpEchoServer();
  const session = await connect(m.url, undefined);
  try {
    const t = await session.openTunnel({
      protocol: "udp",
      source: { ip: "10.0.0.1", port: 5353 },
      destination: { ip: "127.0.0.1", port: echo.port },
    });
    t.write(new Uint8Array([7]));
    assert.deepEqual(new Uint8Array((await t.read())!), new Uint8Array([7]));
    const started = Date.now();
    assert.equal(await t.read(), null);
    assert.ok(Date.now() - started >= 150, "the flow ended before its idle timeout");
    t.closeWrite();
    await t.ended;
  } finally {
    await session.depart();
    await echo.close();
    await m.close();
  }
});

Deno.test("an ICMP error other than port unreachable costs one datagram, counted as network-error; the flow goes on", async () => {
  const m = await startManager();
  const sink = await udpSink();
  const session = await connect(m.url, undefined);
  try {
    const t = await session.openTunnel({
      protocol: "udp",
      source: { ip: "10.0.0.1", port: 5353 },
      destination: { ip: "127.0.0.1", port: sink.port },
    });
    t.write(new Uint8Array([1]));
    await sink.received(1);
    await icmpProhibited(sink.got[0]!.port, sink.port);
    await droppedFor(m.manager, "network-error", 1);
    t.write(new Uint8Array([2]));
    await sink.received(2);
    assert.deepEqual(sink.got.map((g) => [...g.data]), [[1], [2]]);
    assert.equal(t.done, false, "the flow was not reset");
    t.closeWrite();
    await t.ended;
  } finally {
    await session.depart();
    await sink.close();
    await m.close();
  }
});

Deno.test("a datagram larger than UDP allows is dropped and counted as send-error; the flow goes on", async () => {
  const m = await startManager();
  const sink = await udpSink();
  const session = await connect(m.url, undefined);
  try {
    // tp's client never sends one (Tunnel.write refuses it): a raw Tunnel stream on the session's connection does.
    const raw = session.channel.open(methods.Tunnel!.path);
    const ended = new Promise<void>((resolve) => (raw.onClose = () => resolve()));
    raw.write(encodeFrame(encodeTunnelFrame({
      kind: "open",
      open: {
        sessionId: session.id,
        protocol: Protocol.udp,
        source: { ip: "10.0.0.1", port: 5353 },
        destination: { ip: "127.0.0.1", port: sink.port },
      },
    })));
    const big = new Uint8Array(70_000); // over 65,507: EMSGSIZE
    raw.write(encodeDataFrame([big], big.length));
    await droppedFor(m.manager, "send-error", 1);
    const metrics = await (await fetch(`${m.url}/metrics`)).text();
    assert.match(metrics, /^tp_manager_datagrams_dropped_total\{reason="send-error"\} 1$/m);
    const small = new Uint8Array([9, 9]);
    raw.write(encodeDataFrame([small], small.length));
    await sink.received(1);
    assert.deepEqual([...sink.got[0]!.data], [9, 9]);
    raw.write(encodeFrame(encodeTunnelFrame({ kind: "fin" })));
    raw.end();
    await ended;
  } finally {
    await session.depart();
    await sink.close();
    await m.close();
  }
});
