import assert from "node:assert/strict";
import { connect, DialCode, TunnelResetError } from "../proto/mod.ts";
import { startManager, udpEchoServer } from "./manager_fixture.ts";

/** A loopback UDP port nobody listens on: bound for a moment to learn a free one, then closed. */
async function closedUdpPort(host: string): Promise<number> {
  const s = await udpEchoServer(host);
  await s.close();
  return s.port;
}

for (const host of ["127.0.0.1", "::1"]) {
  Deno.test(`a UDP flow to a closed port on ${host} is reset with a reason that says "refused"`, async () => {
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
      assert.match(error.message, /refused/);
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
