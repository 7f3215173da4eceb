import assert from "node:assert/strict";
import dgram from "node:dgram";
import { ECONNREFUSED, UdpPoller, type UdpSocket } from "./udp_socket.ts";
import { OsError } from "./errors.ts";

/** A node:dgram echo server on a loopback address; answers every datagram with the same bytes. */
async function echoServer(type: "udp4" | "udp6"): Promise<{ port: number; close(): Promise<void> }> {
  const server = dgram.createSocket(type);
  server.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
    server.send(msg, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => server.bind(0, type === "udp4" ? "127.0.0.1" : "::1", resolve));
  return {
    port: server.address().port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A loopback UDP port nobody listens on: bound for a moment to learn a free one, then closed. */
async function closedPort(): Promise<number> {
  const s = await echoServer("udp4");
  const port = s.port;
  await s.close();
  return port;
}

/** Receives until `count` datagrams arrived; at the deadline the socket is closed, which ends the wait. */
async function receiveCount(socket: UdpSocket, count: number, timeoutMs = 5000): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  const timer = setTimeout(() => socket.close(), timeoutMs);
  try {
    while (got.length < count && !socket.closed) got.push(...await socket.receive());
  } finally {
    clearTimeout(timer);
  }
  return got;
}

for (const [type, host] of [["udp4", "127.0.0.1"], ["udp6", "::1"]] as const) {
  Deno.test(`UdpSocket round trips datagrams with an echo server on ${host}`, async () => {
    const server = await echoServer(type);
    const poller = new UdpPoller();
    try {
      const socket = poller.connect({ hostname: host, port: server.port });
      assert.ok(socket.localPort > 0);
      const sent = [new Uint8Array([1, 2, 3]), new Uint8Array(0), crypto.getRandomValues(new Uint8Array(1400))];
      for (const d of sent) assert.equal(socket.send(d), true);
      const got = await receiveCount(socket, sent.length);
      assert.deepEqual(got, sent);
      assert.equal(socket.stats.sentDatagrams, 3);
      assert.equal(socket.stats.receivedDatagrams, 3);
      socket.close();
    } finally {
      await poller.close();
      await server.close();
    }
  });
}

Deno.test("UdpSocket reports a closed port as ECONNREFUSED and stays usable", async () => {
  const port = await closedPort();
  const poller = new UdpPoller();
  try {
    const socket = poller.connect({ hostname: "127.0.0.1", port });
    assert.equal(socket.send(new Uint8Array([1])), true);
    // The ICMP port unreachable comes back through loopback: receive() reports it, once.
    const error = await socket.receive().then(() => null, (e) => e);
    assert.ok(error instanceof OsError, `expected an OsError, got ${error}`);
    assert.equal(error.errno, ECONNREFUSED);
    assert.match(error.message, /closed/);
    // Reported once; the next send goes out and is refused again.
    assert.equal(socket.send(new Uint8Array([2])), true);
    const again = await socket.receive().then(() => null, (e) => e);
    assert.equal((again as OsError).errno, ECONNREFUSED);
    socket.close();
  } finally {
    await poller.close();
  }
});

Deno.test("UdpSocket.send() throws the pending ECONNREFUSED when it comes before receive()", async () => {
  const port = await closedPort();
  const poller = new UdpPoller();
  try {
    const socket = poller.connect({ hostname: "127.0.0.1", port });
    // Sends without yielding to the poller: loopback delivers a datagram's ICMP error before send() returns, so the
    // next send() finds it pending.
    let refused: OsError | null = null;
    for (let i = 0; i < 10 && refused === null; i++) {
      try {
        socket.send(new Uint8Array([i]));
      } catch (e) {
        if (e instanceof OsError) refused = e;
        else throw e;
      }
    }
    assert.ok(refused !== null, "no send() reported the closed port");
    assert.equal(refused.errno, ECONNREFUSED);
    assert.equal(refused.syscall, "send");
    socket.close();
  } finally {
    await poller.close();
  }
});

Deno.test("UdpPoller serves more sockets than Deno has blocking threads (one poll for all)", async () => {
  const server = await echoServer("udp4");
  const poller = new UdpPoller();
  try {
    const sockets = Array.from({ length: 100 }, () => poller.connect({ hostname: "127.0.0.1", port: server.port }));
    assert.equal(poller.size, 100);
    sockets.forEach((s, i) => s.send(new Uint8Array([i])));
    const got = await Promise.all(sockets.map((s) => receiveCount(s, 1)));
    got.forEach((datagrams, i) => assert.deepEqual(datagrams, [new Uint8Array([i])]));
    // Deno.stat() runs on the same blocking thread pool: it must not wait behind 100 polls.
    await Deno.stat(".");
    for (const s of sockets) s.close();
    assert.equal(poller.size, 0);
  } finally {
    await poller.close();
    await server.close();
  }
});

Deno.test("UdpSocket.close() ends a pending receive() with no datagrams", async () => {
  const server = await echoServer("udp4");
  const poller = new UdpPoller();
  try {
    const socket = poller.connect({ hostname: "127.0.0.1", port: server.port });
    const pending = socket.receive();
    await new Promise((r) => setTimeout(r, 20));
    socket.close();
    assert.deepEqual(await pending, []);
    assert.deepEqual(await socket.receive(), []);
    assert.throws(() => socket.send(new Uint8Array(1)), TypeError);
  } finally {
    await poller.close();
    await server.close();
  }
});

Deno.test("UdpSocket stops reading at maxQueuedBytes and resumes when receive() takes the queue", async () => {
  const server = await echoServer("udp4");
  const poller = new UdpPoller();
  try {
    const socket = poller.connect({ hostname: "127.0.0.1", port: server.port }, { maxQueuedBytes: 1000 });
    for (let i = 0; i < 5; i++) socket.send(new Uint8Array(400).fill(i));
    const got = await receiveCount(socket, 5);
    assert.deepEqual(got.map((d) => d[0]), [0, 1, 2, 3, 4]);
    socket.close();
  } finally {
    await poller.close();
    await server.close();
  }
});

Deno.test("UdpSocket.sendMany() sends every datagram in order, in batches, and stops at an error", async () => {
  const server = await echoServer("udp4");
  const poller = new UdpPoller();
  try {
    const socket = poller.connect({ hostname: "127.0.0.1", port: server.port });
    // 70 datagrams of 1,200 bytes make three sendmmsg() batches (32, then 64 KiB's worth, then the rest), plus an
    // empty one and one of 40,000 bytes that starts a batch of its own.
    const sent = Array.from({ length: 70 }, (_, i) => new Uint8Array(1200).fill(i));
    sent.push(new Uint8Array(0), new Uint8Array(40_000).fill(7));
    assert.deepEqual(socket.sendMany(sent), { sent: 72, dropped: 0 });
    const got = await receiveCount(socket, sent.length);
    assert.deepEqual(got, sent);
    assert.equal(socket.stats.sentDatagrams, 72);
    // From `start` on; a datagram over UDP's limit is the kernel's EMSGSIZE, and what follows it is not sent.
    const r = socket.sendMany([sent[0]!, sent[1]!, new Uint8Array(65_508), sent[2]!], 1);
    assert.equal(r.sent, 1);
    assert.equal(r.failed?.index, 2);
    assert.equal(r.failed?.error.errno, 90); // EMSGSIZE
    assert.deepEqual((await receiveCount(socket, 1)).map((d) => d[0]), [1]);
    // One over 64 KiB never reaches the kernel: EMSGSIZE all the same.
    const huge = socket.sendMany([sent[3]!, new Uint8Array(70_000), sent[4]!]);
    assert.deepEqual([huge.sent, huge.failed?.index, huge.failed?.error.errno], [1, 1, 90]);
    assert.deepEqual((await receiveCount(socket, 1)).map((d) => d[0]), [3]);
    socket.close();
  } finally {
    await poller.close();
    await server.close();
  }
});

Deno.test("UdpSocket.sendMany() reports the destination's ICMP port unreachable as ECONNREFUSED", async () => {
  const poller = new UdpPoller();
  try {
    const socket = poller.connect({ hostname: "127.0.0.1", port: await closedPort() });
    // Without yielding to the poller (which would take the error first): loopback delivers the ICMP error of the
    // first datagram before the call returns, so a datagram after it finds the error pending.
    let failed: { index: number; error: OsError } | undefined;
    for (let i = 0; i < 10 && failed === undefined; i++) {
      failed = socket.sendMany([new Uint8Array(10), new Uint8Array(10)]).failed;
    }
    assert.equal(failed?.error.errno, ECONNREFUSED);
    assert.equal(failed?.error.syscall, "sendmmsg");
    socket.close();
  } finally {
    await poller.close();
  }
});

Deno.test("UdpSocket asks for a 1 MiB receive buffer, or as much as net.core.rmem_max allows", async () => {
  const poller = new UdpPoller();
  try {
    const socket = poller.connect({ hostname: "127.0.0.1", port: 9 });
    const rmemMax = Number(await Deno.readTextFile("/proc/sys/net/core/rmem_max"));
    // The kernel reports twice the size asked; root passes rmem_max (SO_RCVBUFFORCE), anyone else is capped there.
    const root = Deno.uid() === 0;
    assert.equal(socket.receiveBufferBytes, 2 * (root ? 1 << 20 : Math.min(1 << 20, rmemMax)));
    const small = poller.connect({ hostname: "127.0.0.1", port: 9 }, { receiveBufferBytes: 64 * 1024 });
    assert.equal(small.receiveBufferBytes, 128 * 1024);
    assert.throws(() => poller.connect({ hostname: "127.0.0.1", port: 9 }, { receiveBufferBytes: 0 }), RangeError);
    socket.close();
    small.close();
  } finally {
    await poller.close();
  }
});

Deno.test("UdpPoller.connect() rejects a bad address or port", async () => {
  const poller = new UdpPoller();
  try {
    assert.throws(() => poller.connect({ hostname: "198.18.0", port: 7 }), SyntaxError);
    assert.throws(() => poller.connect({ hostname: "127.0.0.1", port: 0 }), RangeError);
    assert.equal(poller.size, 0);
  } finally {
    await poller.close();
  }
  assert.throws(() => poller.connect({ hostname: "127.0.0.1", port: 7 }), TypeError);
});
