/**
 * Capacity: one HTTP/2 connection holds 1000 idle tunnel streams open at once (the manager advertises
 * SETTINGS_MAX_CONCURRENT_STREAMS above --max-streams-per-session; Deno.serve's 200 held tp to ~195 connections).
 */
import assert from "node:assert/strict";
import { connect, DialCode, type Tunnel } from "../proto/mod.ts";
import { maxConcurrentStreams } from "../manager/server.ts";
import { startManager, tcpEchoServer, testConfig } from "./manager_fixture.ts";

const N = 1000;

Deno.test(`${N} idle tunnel streams are open and dialed at once on one connection, then all still carry data`, async () => {
  // A dial timeout of 5 s (the manager's default): N SYNs at once overflow the echo listener's accept queue, and the
  // kernel retries a dropped SYN after 1 s.
  const m = await startManager({ dialTimeoutMs: 5_000 });
  const echo = tcpEchoServer();
  const s = await connect(m.url, undefined);
  const tunnels: Tunnel[] = [];
  try {
    assert.ok(s.channel.session.remoteSettings.maxConcurrentStreams! >= N);
    const opened = await Promise.all(Array.from({ length: N }, (_, i) =>
      s.openTunnel({
        protocol: "tcp",
        source: { ip: "10.0.0.1", port: 10000 + i },
        destination: { ip: "127.0.0.1", port: echo.port },
      })));
    tunnels.push(...opened);
    // Every stream is open and dialed, none closed: N live streams on the manager, N accepted connections.
    assert.equal(tunnels.filter((t) => t.dial.code === DialCode.ok).length, N);
    assert.equal(m.manager.active.size, N);
    assert.equal(echo.state.accepted, N);
    assert.equal(s.tunnels.size, N);
    // Held idle, each still works, then closes cleanly.
    const one = async (t: Tunnel, i: number) => {
      const msg = new TextEncoder().encode(`stream ${i}`);
      t.write(msg);
      assert.deepEqual(new TextDecoder().decode((await t.read())!), `stream ${i}`);
      t.closeWrite();
      assert.equal(await t.read(), null);
      assert.equal((await t.ended).how, "closed");
    };
    await Promise.all(tunnels.map(one));
    assert.equal(m.manager.active.size, 0);
  } finally {
    for (const t of tunnels) t.reset();
    await s.depart();
    await echo.close();
    await m.close();
  }
});

Deno.test("the manager's HTTP/2 stream limit follows --max-streams-per-session", () => {
  assert.ok(maxConcurrentStreams(testConfig({ maxStreamsPerSession: 4096 })) > 4096);
  assert.ok(maxConcurrentStreams(testConfig({ maxStreamsPerSession: 10 })) > 10);
});
