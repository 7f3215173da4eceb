/**
 * The manager's per-session budget of held bytes (manager/session_buffer.ts, `tp manager --session-buffer-bytes`),
 * through the real tunnel: real sockets, the manager's own HTTP/2, tp's client. One session opens many streams to a
 * fast source and neither reads nor acknowledges them; the manager keeps what it holds for it near the budget, while
 * another session's stream still flows; once the first reads, every stream completes with every byte in order.
 */
import assert from "node:assert/strict";
import { connect, DialCode, type Tunnel } from "../proto/mod.ts";
import { seededBytes, startManager } from "./manager_fixture.ts";
import { STREAM_FLOOR_BYTES } from "../manager/session_buffer.ts";
import { ACK_EVERY } from "../manager/tunnel_resume.ts";

const BUDGET = 2 << 20;
/** What each connection of the source sends, as fast as the socket takes it. */
const PER_STREAM = 2 << 20;
const RESUMABLE = 24;
const PLAIN = 8;
/**
 * node:net (Deno's) reads a socket into buffers of 64 KiB; one read of each stream may be under way when the budget
 * fills. And each stream has an allowance outside the budget, its floor (STREAM_FLOOR_BYTES; a resumable one,
 * ACK_EVERY: what the workstation acknowledges at once). So the budget's count stays within the budget plus one read
 * per stream, and all the session's bytes within that plus each stream's floor.
 */
const READ_BYTES = 64 << 10;
const COUNTED_BOUND = BUDGET + (RESUMABLE + PLAIN) * READ_BYTES;
const BOUND = COUNTED_BOUND + RESUMABLE * ACK_EVERY + PLAIN * STREAM_FLOOR_BYTES;

/** Sends, to each connection, PER_STREAM seeded bytes (the seed is the first byte it receives), then its FIN. */
function source() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done: Promise<void>[] = [];
  const conns = new Set<Deno.TcpConn>();
  const serve = async (c: Deno.TcpConn) => {
    conns.add(c);
    try {
      const one = new Uint8Array(1);
      if ((await c.read(one)) !== 1) return;
      const bytes = seededBytes(PER_STREAM, one[0]! + 1);
      for (let o = 0; o < bytes.length;) o += await c.write(bytes.subarray(o, o + 256 * 1024));
      await c.closeWrite();
      while ((await c.read(new Uint8Array(16))) !== null) { /* until the other side's FIN */ }
    } catch {
      /* reset */
    } finally {
      conns.delete(c);
      try {
        c.close();
      } catch { /* closed */ }
    }
  };
  const loop = (async () => {
    try {
      for await (const c of listener) done.push(serve(c));
    } catch { /* closed */ }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await loop;
      await Promise.all(done);
    },
  };
}

async function readAll(t: Tunnel): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (let c = await t.read(); c; c = await t.read()) {
    chunks.push(c);
    n += c.length;
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) o += (out.set(c, o), c.length);
  return out;
}

async function until(what: string, ok: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!ok()) {
    if (performance.now() > end) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("a session that neither reads nor acknowledges holds the manager to its budget; another session flows; all bytes arrive once it reads", async () => {
  const m = await startManager({ sessionBufferBytes: BUDGET, dialTimeoutMs: 5_000 });
  const src = source();
  const abuser = await connect(m.url, undefined);
  const other = await connect(m.url, undefined);
  const tunnels: { t: Tunnel; seed: number; ack: ((n: number) => void) | undefined }[] = [];
  try {
    const session = m.manager.sessions.get(abuser.id)!;
    // All open before any byte flows: a client that does not read would soon fill its own connection's window.
    for (let i = 0; i < RESUMABLE + PLAIN; i++) {
      const t = await abuser.openTunnel({
        protocol: "tcp",
        source: { ip: "198.18.9.1", port: 20000 + i },
        destination: { ip: "127.0.0.1", port: src.port },
      }, { resumable: i < RESUMABLE });
      assert.equal(t.dial.code, DialCode.ok);
      assert.equal(t.resumable, i < RESUMABLE);
      tunnels.push({ t, seed: i + 1, ack: t.sendAck });
      t.sendAck = () => {}; // acknowledges nothing (and nobody calls read())
    }
    for (const [i, { t }] of tunnels.entries()) t.write(new Uint8Array([i]));

    // What the manager holds for the session: the budget's own count, and the streams' buffers counted apart from it
    // (a resumable stream's kept bytes and unsent socket bytes; a plain stream's queue and socket bytes).
    const measured = () => {
      let n = 0;
      for (const [key, rs] of m.manager.resumable) if (key.startsWith(`${abuser.id}/`)) n += rs.buffered;
      for (const ctx of m.manager.active) {
        if (ctx.open.sessionId === abuser.id && !ctx.open.resumable) n += ctx.buffered();
      }
      return n;
    };
    let maxHeld = 0, maxMeasured = 0;
    const sample = () => {
      const held = session.buffer.held, all = measured();
      maxHeld = Math.max(maxHeld, held);
      maxMeasured = Math.max(maxMeasured, all);
      assert.ok(held <= COUNTED_BOUND, `counted ${held} > ${COUNTED_BOUND}`);
      assert.ok(all <= BOUND, `measured ${all} > ${BOUND}`);
      assert.equal(session.buffer.total, all, "the budget counts every byte the streams hold");
    };
    await until("the session's budget fills and its streams wait", () => {
      sample();
      return session.buffer.full && session.buffer.waiting > 0;
    });
    // Steady: for a while, nothing grows past the bound (without the budget this session would make the manager
    // hold 24 x 2 MiB kept for a resume, and the plain streams' queues).
    const steadyUntil = performance.now() + 1_000;
    while (performance.now() < steadyUntil) {
      sample();
      await new Promise((r) => setTimeout(r, 10));
    }

    // Another session's stream flows meanwhile, to its end, every byte in order.
    const t = await other.openTunnel({
      protocol: "tcp",
      source: { ip: "198.18.9.2", port: 30000 },
      destination: { ip: "127.0.0.1", port: src.port },
    });
    t.write(new Uint8Array([200]));
    const got = await readAll(t);
    assert.deepEqual(got, seededBytes(PER_STREAM, 201));
    t.closeWrite();
    sample();
    assert.ok(session.buffer.waiting > 0, "the first session is still held back");

    // Counted: /metrics, and one log line for the session.
    const metrics = await (await fetch(`${m.url}/metrics`)).text();
    const pauses = Number(/^tp_manager_session_buffer_pauses_total (\d+)$/m.exec(metrics)?.[1]);
    assert.ok(pauses >= 1, metrics);
    const held = Number(/^tp_manager_session_buffered_bytes\{stat="max"\} (\d+)$/m.exec(metrics)?.[1]);
    assert.ok(held > BUDGET && held <= BOUND, `held ${held}`);
    assert.match(metrics, /^tp_manager_sessions_buffer_full_total 1$/m);
    const full = m.logger.lines.filter((l) => l.msg.startsWith("session buffer full"));
    assert.equal(full.length, 1);

    // The first session reads (and acknowledges) now: every stream completes, every byte in order.
    for (const x of tunnels) {
      x.t.sendAck = x.ack;
      if (x.t.resumable) x.ack?.(x.t.received);
    }
    const all = await Promise.all(tunnels.map(async (x) => ({ x, bytes: await readAll(x.t) })));
    for (const { x, bytes } of all) {
      assert.equal(bytes.length, PER_STREAM, `stream ${x.seed}`);
      assert.deepEqual(bytes, seededBytes(PER_STREAM, x.seed), `stream ${x.seed}`);
    }
    for (const { t } of tunnels) t.closeWrite();
    await until("the streams end and give their bytes back", () => session.buffer.total === 0);
    console.log(
      `budget ${BUDGET}: counted at most ${maxHeld} (bound ${COUNTED_BOUND}), held at most ${maxMeasured} ` +
        `(bound ${BOUND}); pauses ${pauses}`,
    );
  } finally {
    for (const { t } of tunnels) t.reset("test over");
    await abuser.depart().catch(() => {});
    await other.depart().catch(() => {});
    await src.close();
    await m.close();
  }
});
