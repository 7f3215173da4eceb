/**
 * Many concurrent tunnels on the ONE connection to the manager: its HTTP/2 server (tp's own) sets no small limit on
 * streams per connection (Deno.serve, which it replaced, allowed 200), so a workstation holds hundreds of
 * connections open at once over one TCP connection.
 */
import assert from "node:assert/strict";
import { connect, DialCode, type Tunnel } from "../proto/mod.ts";
import { startManager, tcpEchoServer } from "./manager_fixture.ts";

Deno.test("600 tunnels held open at once on one TCP connection to the manager, all carry bytes", async () => {
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
    assert.equal(s.channel.connection.streamCount, 600);
    // What the kernel sees: one established TCP connection from this process to the manager's port.
    const ss = await new Deno.Command("ss", {
      args: ["-Htn", "state", "established", `( dport = :${m.port} )`],
      stdout: "piped",
    }).output();
    const lines = new TextDecoder().decode(ss.stdout).trim().split("\n").filter((l) => l.trim() !== "");
    assert.equal(lines.length, 1, `connections to the manager:\n${lines.join("\n")}`);
    assert.equal(echo.state.accepted, 600);
  } finally {
    for (const t of open) t.reset("done");
    await s.depart();
    await echo.close();
    await m.close();
  }
});
