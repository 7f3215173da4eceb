import assert from "node:assert/strict";
import { connect, DialCode, GrpcError, Status, TunnelResetError } from "../proto/mod.ts";
import { seededBytes, sha256, startManager, tcpEchoServer, udpEchoServer } from "./manager_fixture.ts";

Deno.test("a TCP tunnel carries 8 MB each way to an echo server, verified by hash", async () => {
  const m = await startManager();
  const echo = tcpEchoServer();
  const session = await connect(m.url, undefined);
  try {
    const t = await session.openTunnel({
      protocol: "tcp",
      source: { ip: "10.0.0.1", port: 40000 },
      destination: { ip: "127.0.0.1", port: echo.port },
    });
    assert.equal(t.dial.code, DialCode.ok);
    const data = seededBytes(8 * 1024 * 1024, 7);
    const writer = (async () => {
      for (let o = 0; o < data.length; o += 1400) {
        if (!t.write(data.subarray(o, Math.min(o + 1400, data.length)))) await t.drained();
      }
      t.closeWrite();
    })();
    const got: Uint8Array[] = [];
    for await (const c of t) got.push(c);
    await writer;
    assert.equal(await sha256(got), await sha256([data]));
    const end = await t.ended;
    assert.equal(end.how, "closed");
  } finally {
    await session.depart();
    await echo.close();
    await m.close();
  }
});

Deno.test("a UDP tunnel carries datagrams both ways with their boundaries", async () => {
  const m = await startManager();
  const echo = await udpEchoServer();
  const session = await connect(m.url, undefined);
  try {
    const t = await session.openTunnel({
      protocol: "udp",
      source: { ip: "10.0.0.1", port: 5353 },
      destination: { ip: "127.0.0.1", port: echo.port },
    });
    assert.equal(t.dial.code, DialCode.ok);
    for (const size of [1, 100, 1400, 8000]) {
      const d = seededBytes(size, size);
      t.write(d);
      const r = await t.read();
      assert.deepEqual(new Uint8Array(r!), d);
    }
    t.closeWrite();
    assert.equal(await t.read(), null);
    assert.equal((await t.ended).how, "closed");
  } finally {
    await session.depart();
    await echo.close();
    await m.close();
  }
});

Deno.test("a UDP tunnel frames the datagrams written in one tick together, each arriving whole and in order", async () => {
  const m = await startManager();
  const echo = await udpEchoServer();
  const session = await connect(m.url, undefined);
  try {
    const t = await session.openTunnel({
      protocol: "udp",
      source: { ip: "10.0.0.1", port: 5353 },
      destination: { ip: "127.0.0.1", port: echo.port },
    });
    // One tick: the frames share buffers (the one of 30,000 bytes grows a batch, the one of 65,507 starts another).
    const sizes = Array.from({ length: 60 }, (_, i) => 1 + ((i * 277) % 1400));
    sizes.splice(20, 0, 30_000);
    sizes.push(65_507, 3);
    const sent = sizes.map((size, i) => seededBytes(size, i));
    let bytes = 0;
    for (const d of sent) {
      t.write(d);
      bytes += d.length;
    }
    assert.ok(t.writeBuffered >= bytes, `writeBuffered ${t.writeBuffered} counts the batch (${bytes} bytes)`);
    for (const d of sent) assert.deepEqual(new Uint8Array((await t.read())!), d);
    t.closeWrite();
    assert.equal(await t.read(), null);
  } finally {
    await session.depart();
    await echo.close();
    await m.close();
  }
});

Deno.test("dial results: closed port is refused, outside the allow list is denied", async () => {
  const m = await startManager();
  const session = await connect(m.url, undefined);
  try {
    const refused = await session.openTunnel({
      protocol: "tcp",
      source: { ip: "10.0.0.1", port: 1 },
      destination: { ip: "127.0.0.1", port: 9 },
    });
    assert.equal(refused.dial.code, DialCode.refused);
    assert.equal(await refused.read(), null);
    await refused.ended;
    const denied = await session.openTunnel({
      protocol: "tcp",
      source: { ip: "10.0.0.1", port: 1 },
      destination: { ip: "192.0.2.1", port: 80 },
    });
    assert.equal(denied.dial.code, DialCode.denied);
    await denied.ended;
  } finally {
    await session.depart();
    await m.close();
  }
});

Deno.test("a wrong token is answered UNAUTHENTICATED", async () => {
  const m = await startManager({ token: "s3cret" });
  try {
    await assert.rejects(connect(m.url, "wrong"), (e) => e instanceof GrpcError && e.code === Status.UNAUTHENTICATED);
    const s = await connect(m.url, "s3cret");
    await s.depart();
  } finally {
    await m.close();
  }
});

Deno.test("reset from the client reaches the destination as a TCP RST", async () => {
  const m = await startManager();
  const echo = tcpEchoServer();
  const session = await connect(m.url, undefined);
  try {
    const t = await session.openTunnel({
      protocol: "tcp",
      source: { ip: "10.0.0.1", port: 1 },
      destination: { ip: "127.0.0.1", port: echo.port },
    });
    t.write(new TextEncoder().encode("hello"));
    assert.deepEqual(new TextDecoder().decode((await t.read())!), "hello");
    t.reset();
    await assert.rejects(t.read(), TunnelResetError);
    await t.ended;
    for (let i = 0; i < 50 && echo.state.resets === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(echo.state.resets, 1);
  } finally {
    await session.depart();
    await echo.close();
    await m.close();
  }
});

Deno.test("a destination spelled so that node:net reads it otherwise is dialled as the address the allow-list checked", async () => {
  const m = await startManager();
  const echo = tcpEchoServer();
  const session = await connect(m.url, undefined);
  try {
    // "::127.0.0.1" is 127.0.0.1 to the allow-list (ipaddr.js) but ::7f00:1, an IPv6 address, to node:net; "0x7f.1"
    // is no address to node:net at all (it would ask getaddrinfo). Both must reach 127.0.0.1.
    for (const ip of ["::127.0.0.1", "0x7f.1", "::ffff:127.0.0.1"]) {
      const t = await session.openTunnel({
        protocol: "tcp",
        source: { ip: "10.0.0.1", port: 40001 },
        destination: { ip, port: echo.port },
      });
      assert.equal(t.dial.code, DialCode.ok, `${ip}: ${t.dial.message}`);
      t.write(new TextEncoder().encode("hi"));
      assert.equal(new TextDecoder().decode((await t.read())!), "hi");
      t.closeWrite();
      await t.ended;
    }
    // "010.0.0.1" is 8.0.0.1 to both: outside the allowed destinations.
    const denied = await session.openTunnel({
      protocol: "tcp",
      source: { ip: "10.0.0.1", port: 40002 },
      destination: { ip: "010.0.0.1", port: echo.port },
    });
    assert.equal(denied.dial.code, DialCode.denied, denied.dial.message);
    assert.match(denied.dial.message, /8\.0\.0\.1 is outside/);
  } finally {
    await session.depart();
    await echo.close();
    await m.close();
  }
});
