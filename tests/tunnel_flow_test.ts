/** Flow control, half-close from the destination, many streams, and expiry of a session whose client was killed. */
import assert from "node:assert/strict";
import { connect, DialCode, STREAM_WINDOW, WRITE_HARD_LIMIT } from "../proto/mod.ts";
import { seededBytes, sha256, startManager, tcpEchoServer } from "./manager_fixture.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("a destination that stops reading stops the client's writes, with bounded buffers", async () => {
  const m = await startManager();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const start = Promise.withResolvers<void>();
  const server = (async () => {
    const c = await listener.accept();
    await start.promise;
    const buf = new Uint8Array(1 << 16);
    let n = 0;
    for (let k = await c.read(buf); k !== null; k = await c.read(buf)) n += k;
    c.close();
    return n;
  })();
  const s = await connect(m.url, undefined);
  try {
    const t = await s.openTunnel({
      protocol: "tcp",
      source: { ip: "10.0.0.1", port: 1 },
      destination: { ip: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port },
    });
    assert.equal(t.dial.code, DialCode.ok);
    const chunk = seededBytes(1400);
    let stalled = false;
    while (t.stats().bytesWritten < 256 * 1024 * 1024) {
      if (t.write(chunk)) continue;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        t.drained().then(() => "drained"),
        new Promise((res) => (timer = setTimeout(() => res("stalled"), 500))),
      ]);
      clearTimeout(timer);
      if (r === "stalled") {
        stalled = true;
        break;
      }
    }
    assert.ok(stalled, "writes stall while the destination does not read");
    const written = t.stats().bytesWritten;
    assert.ok(t.stats().writeBuffered < WRITE_HARD_LIMIT, `client buffers ${t.stats().writeBuffered}`);
    const metrics = await (await fetch(`${m.url}/metrics`)).text();
    const buffered = Number(/^tp_manager_stream_buffered_bytes (\d+)/m.exec(metrics)?.[1]);
    // The manager holds at most what the stream window let the client send, plus its socket buffer.
    assert.ok(buffered < STREAM_WINDOW + 1024 * 1024, `manager buffers ${buffered}`);
    start.resolve();
    await t.drained();
    t.closeWrite();
    assert.equal(await t.read(), null);
    assert.equal(await server, written);
    await t.ended;
  } finally {
    start.resolve();
    listener.close();
    await server.catch(() => {});
    await s.depart();
    await m.close();
  }
});

Deno.test("a FIN from the destination reaches the client, which can still send until its own FIN", async () => {
  const m = await startManager();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = (async () => {
    const c = await listener.accept();
    await c.write(new TextEncoder().encode("hello"));
    await c.closeWrite();
    let text = "";
    const buf = new Uint8Array(1024);
    for (let k = await c.read(buf); k !== null; k = await c.read(buf)) {
      text += new TextDecoder().decode(buf.subarray(0, k));
    }
    c.close();
    return text;
  })();
  const s = await connect(m.url, undefined);
  try {
    const t = await s.openTunnel({
      protocol: "tcp",
      source: { ip: "10.0.0.1", port: 1 },
      destination: { ip: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port },
    });
    assert.equal(new TextDecoder().decode((await t.read())!), "hello");
    assert.equal(await t.read(), null);
    t.write(new TextEncoder().encode("after your FIN"));
    t.closeWrite();
    assert.equal(await server, "after your FIN");
    assert.equal((await t.ended).how, "closed");
  } finally {
    listener.close();
    await s.depart();
    await m.close();
  }
});

Deno.test("1000 concurrent tunnel streams all carry their bytes", async () => {
  // Truly concurrent dials (the client opens further HTTP/2 connections past the manager's 200 streams on one) can
  // overflow the echo server's listen backlog; the kernel retries a dropped SYN after 1 s, so allow more than that.
  const m = await startManager({ dialTimeoutMs: 5_000 });
  const echo = tcpEchoServer();
  const s = await connect(m.url, undefined);
  try {
    const one = async (i: number) => {
      const t = await s.openTunnel({
        protocol: "tcp",
        source: { ip: "10.0.0.1", port: 10000 + i },
        destination: { ip: "127.0.0.1", port: echo.port },
      });
      assert.equal(t.dial.code, DialCode.ok);
      const data = seededBytes(2000, i + 1);
      t.write(data);
      t.closeWrite();
      const got: Uint8Array[] = [];
      for await (const c of t) got.push(c);
      assert.equal(await sha256(got), await sha256([data]));
      await t.ended;
    };
    await Promise.all(Array.from({ length: 1000 }, (_, i) => one(i)));
    assert.equal(echo.state.accepted, 1000);
    assert.equal(m.manager.metrics.streamsTotal.get({ protocol: "tcp" }), 1000);
  } finally {
    await s.depart();
    await echo.close();
    await m.close();
  }
});

Deno.test("the session of a killed client expires within its ttl and resume grace, and its streams close", async () => {
  const ttl = 800;
  // A session outlives its last keepalive by the larger of its ttl and the resume grace period (plus a keepalive
  // interval): here the ttl.
  const m = await startManager({ sessionTtlMs: ttl, resumeGraceMs: 100 });
  const echo = tcpEchoServer();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./manager_vanish_child.ts", import.meta.url).pathname,
      m.url,
      "127.0.0.1",
      String(echo.port),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const line = await reader.read();
    assert.match(line.value ?? "", /^ready \S+ 1/);
    assert.equal(m.manager.sessions.size, 1);
    assert.equal(m.manager.active.size, 1);
    child.kill("SIGKILL");
    await child.status;
    await reader.cancel();
    const t0 = Date.now();
    while ((m.manager.sessions.size > 0 || m.manager.active.size > 0) && Date.now() - t0 < ttl + 2000) await sleep(50);
    assert.equal(m.manager.active.size, 0, "streams closed");
    assert.equal(m.manager.sessions.size, 0, "session expired");
    assert.equal(m.manager.metrics.sessionsExpired.get(), 1);
    assert.ok(m.logger.lines.some((l) => l.msg === "session expired"));
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
    await echo.close();
    await m.close();
  }
});
