/**
 * More concurrent tunnels than the manager's HTTP/2 server allows streams on one connection (Deno.serve: 200): the
 * client opens a further connection for the rest, so a workstation can hold a thousand connections open at once.
 */
import assert from "node:assert/strict";
import { connect, DialCode, type Tunnel } from "../proto/mod.ts";
import { startManager, tcpEchoServer } from "./manager_fixture.ts";

Deno.test("600 tunnels held open at once, past the manager's streams per connection, all carry bytes", async () => {
  const m = await startManager({ dialTimeoutMs: 5_000 });
  const echo = tcpEchoServer();
  const s = await connect(m.url, undefined);
  const open: Tunnel[] = [];
  try {
    // Open them all and prove each with an echoed byte before any is closed.
    const one = async (i: number) => {
      const t = await s.openTunnel({
        protocol: "tcp",
        source: { ip: "198.18.9.1", port: 20000 + i },
        destination: { ip: "127.0.0.1", port: echo.port },
      });
      assert.equal(t.dial.code, DialCode.ok);
      open.push(t);
      t.write(new Uint8Array([i & 0xff]));
      const got = await t.read();
      assert.deepEqual(got && Array.from(got), [i & 0xff]);
    };
    // In batches, so the echo server's listen backlog (and the kernel's SYN retry after 1 s) play no part.
    for (let b = 0; b < 600; b += 100) await Promise.all(Array.from({ length: 100 }, (_, i) => one(b + i)));
    assert.equal(open.length, 600);
    assert.ok(
      s.channel.connections >= 3,
      `600 streams need 3 connections at 200 a piece; had ${s.channel.connections}`,
    );
    assert.equal(echo.state.accepted, 600);
  } finally {
    for (const t of open) t.reset("done");
    await s.depart();
    await echo.close();
    await m.close();
  }
});
