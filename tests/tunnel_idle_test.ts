/** The manager resets a TCP tunnel whose connection carried nothing for its idle timeout, and only that one. */
import assert from "node:assert/strict";
import { connect, DialCode, TunnelResetError } from "../proto/mod.ts";
import { startManager, tcpEchoServer } from "./manager_fixture.ts";

Deno.test("an idle tunnel is reset after the manager's idle timeout; one carrying bytes stays open", async () => {
  const m = await startManager({ tcpIdleTimeoutMs: 400 });
  const echo = tcpEchoServer();
  const s = await connect(m.url, undefined);
  try {
    const open = (port: number) =>
      s.openTunnel({
        protocol: "tcp",
        source: { ip: "198.18.9.1", port },
        destination: { ip: "127.0.0.1", port: echo.port },
      });
    const idle = await open(30001);
    const busy = await open(30002);
    assert.equal(idle.dial.code, DialCode.ok);
    assert.equal(busy.dial.code, DialCode.ok);
    const t0 = performance.now();
    // 1.2 s of traffic on one (every 100 ms), none on the other.
    for (let i = 0; i < 12; i++) {
      busy.write(new Uint8Array([i]));
      assert.deepEqual(Array.from((await busy.read())!), [i]);
      await new Promise((r) => setTimeout(r, 100));
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const bounded = Promise.race([
      idle.read(),
      new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("no reset within 3 s")), 3000))),
    ]).finally(() => clearTimeout(timer));
    await assert.rejects(bounded, (e: unknown) => {
      assert.ok(e instanceof TunnelResetError, String(e));
      assert.match(e.message, /idle for 400 ms/);
      return true;
    });
    const end = await idle.ended;
    assert.equal(end.how, "reset");
    assert.ok(performance.now() - t0 < 5000);
    busy.write(new Uint8Array([99]));
    assert.deepEqual(Array.from((await busy.read())!), [99], "the busy tunnel is still open");
    busy.closeWrite();
    assert.equal(await busy.read(), null);
  } finally {
    await s.depart();
    await echo.close();
    await m.close();
  }
});
