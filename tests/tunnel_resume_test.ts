/**
 * Resumable tunnels against an in-process manager on loopback: a connection that breaks mid-transfer and a new one
 * that resumes the session carry every byte once, in order; a stream the manager gave up on (its grace period ended)
 * is reset alone.
 */
import assert from "node:assert/strict";
import { connect, type ManagerSession, type Tunnel, TunnelResetError } from "../proto/mod.ts";
import { readAll, seededBytes, sha256, startManager, tcpEchoServer, writeAll } from "./manager_fixture.ts";

const MB = 1 << 20;

async function openEcho(s: ManagerSession, port: number): Promise<Tunnel> {
  return await s.openTunnel({
    protocol: "tcp",
    source: { ip: "10.0.0.1", port: 1 },
    destination: { ip: "127.0.0.1", port },
  }, { resumable: true });
}

Deno.test("a tunnel carries 16 MB through a broken connection and a resumed session, every byte once", async () => {
  const m = await startManager();
  const echo = tcpEchoServer();
  let s = await connect(m.url, undefined);
  try {
    assert.equal(s.resumeGraceMs, 30_000);
    const t = await openEcho(s, echo.port);
    assert.ok(t.resumable);
    const data = seededBytes(16 * MB, 7);
    const writing = writeAll(t, data);
    const reading = readAll(t);
    // Break the connection once a few MB went each way.
    while (t.stats().bytesRead < 3 * MB) await new Promise((r) => setTimeout(r, 5));
    const suspended = await s.detach();
    assert.deepEqual(suspended, [t]);
    assert.ok(t.suspended);
    const id = s.id;
    s = await connect(m.url, undefined, { resumeSessionId: id });
    assert.equal(s.resumed, true);
    assert.equal(s.id, id);
    assert.deepEqual(await s.adopt(suspended), [true]);
    await writing;
    const got = await reading;
    assert.equal(await sha256(got), await sha256([data]));
    assert.equal(echo.state.resets, 0);
    assert.equal(echo.state.accepted, 1, "the destination saw one connection");
    assert.match(
      await (await fetch(`${m.url}/metrics`)).text(),
      /tp_manager_stream_resumes_total\{result="resumed"\} 1/,
    );
  } finally {
    await s.close();
    await echo.close();
    await m.close();
  }
});

Deno.test("a stream whose grace period ended is reset alone; the session resumes and new streams work", async () => {
  const m = await startManager({ resumeGraceMs: 300, sessionTtlMs: 30_000 });
  const echo = tcpEchoServer();
  let s = await connect(m.url, undefined);
  try {
    const t = await openEcho(s, echo.port);
    t.write(new TextEncoder().encode("before"));
    assert.equal(new TextDecoder().decode((await t.read())!), "before");
    const suspended = await s.detach();
    // Wait for the manager to give the stream up (its grace period of 300 ms).
    for (let i = 0; i < 200 && m.manager.resumable.size > 0; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(m.manager.resumable.size, 0);
    s = await connect(m.url, undefined, { resumeSessionId: s.id });
    assert.equal(s.resumed, true, "the session outlives its streams' grace period");
    assert.deepEqual(await s.adopt(suspended), [false]);
    await assert.rejects(t.read(), TunnelResetError);
    const t2 = await openEcho(s, echo.port);
    t2.write(new TextEncoder().encode("after"));
    assert.equal(new TextDecoder().decode((await t2.read())!), "after");
    t2.closeWrite();
    assert.equal(await t2.read(), null);
  } finally {
    await s.close();
    await echo.close();
    await m.close();
  }
});

Deno.test("streams a resumed session did not rejoin are reset once it says it rejoined, not at the grace's end", async () => {
  const m = await startManager(); // grace 30 s: the reset must not wait for it
  const echo = tcpEchoServer();
  let s = await connect(m.url, undefined);
  try {
    const kept = await openEcho(s, echo.port);
    const forgotten = await openEcho(s, echo.port);
    for (const t of [kept, forgotten]) {
      t.write(new TextEncoder().encode("ping"));
      assert.equal(new TextDecoder().decode((await t.read())!), "ping");
    }
    const suspended = await s.detach();
    assert.equal(suspended.length, 2);
    s = await connect(m.url, undefined, { resumeSessionId: s.id });
    assert.equal(s.resumed, true);
    // The client rejoins one of its two streams (the other it lost track of, as when a cut came before it learned
    // the stream's id), then says it is done.
    assert.deepEqual(await s.adopt([kept]), [true]);
    assert.equal(await s.rejoined(), 1);
    for (let i = 0; i < 200 && echo.state.resets < 1; i++) await new Promise((r) => setTimeout(r, 25));
    assert.equal(echo.state.resets, 1, "the forgotten stream's destination got a reset at once");
    assert.equal(m.manager.resumable.size, 1, "only the rejoined stream is kept");
    kept.write(new TextEncoder().encode("still here"));
    assert.equal(new TextDecoder().decode((await kept.read())!), "still here");
    assert.equal(await s.rejoined(), 0, "said twice, nothing more to reset");
    forgotten.reset("the test is done with it");
    kept.closeWrite();
    assert.equal(await kept.read(), null);
  } finally {
    await s.close();
    await echo.close();
    await m.close();
  }
});

Deno.test("acks do not wait behind data: an upload of 32 MB before reading a 32 MB response sent meanwhile finishes", async () => {
  const m = await startManager();
  // The destination reads everything while it sends its own 32 MB at once.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = (async () => {
    const c = await listener.accept();
    const sending = (async () => {
      const out = seededBytes(32 * MB, 3);
      for (let o = 0; o < out.length;) o += await c.write(out.subarray(o, o + 65536));
      await c.closeWrite();
    })();
    const buf = new Uint8Array(65536);
    let n = 0;
    for (let k = await c.read(buf); k !== null; k = await c.read(buf)) n += k;
    await sending;
    c.close();
    return n;
  })();
  const s = await connect(m.url, undefined);
  try {
    const t = await openEcho(s, (listener.addr as Deno.NetAddr).port);
    await writeAll(t, seededBytes(32 * MB, 4)); // not reading meanwhile: the response waits in flow control
    const got = await readAll(t);
    assert.equal(await sha256(got), await sha256([seededBytes(32 * MB, 3)]));
    assert.equal(await server, 32 * MB);
  } finally {
    listener.close();
    await s.close();
    await m.close();
  }
});

Deno.test("1,500 resumable streams opened and closed one after another end cleanly: no reset counts as rapid reset", async () => {
  const m = await startManager();
  const echo = tcpEchoServer();
  const s = await connect(m.url, undefined);
  try {
    for (let i = 0; i < 1_500; i++) {
      const t = await openEcho(s, echo.port);
      t.write(new Uint8Array([i & 0xff]));
      t.closeWrite();
      const got = await readAll(t);
      assert.deepEqual(got.map((c) => [...c]).flat(), [i & 0xff]);
      const end = await t.ended;
      assert.equal(end.how, "closed", `stream ${i}: ${end.reason}`);
    }
    assert.ok(s.channel.connection.usable, "the connection is still up");
    assert.equal(m.manager.resumable.size, 0, "the manager kept none of them");
  } finally {
    await s.close();
    await echo.close();
    await m.close();
  }
});
