/**
 * In-process fixtures for manager and tunnel tests on loopback: a manager on an ephemeral port, TCP and UDP echo
 * servers. Each returns a `close()` that releases everything it opened, so test sanitizers stay on.
 */
import dgram from "node:dgram";
import { concat } from "../base/bytes.ts";
import { type ManagerConfig } from "../manager/config.ts";
import { recordingLogger } from "../manager/log.ts";
import { Manager } from "../manager/server.ts";
import { serveManager, type ServeOptions } from "../manager/listen.ts";
import { connect, type ManagerSession, type Tunnel } from "../proto/mod.ts";
import assert from "node:assert/strict";

export function testConfig(overrides: Partial<ManagerConfig> = {}): ManagerConfig {
  return {
    listen: { host: "127.0.0.1", port: 0 },
    podCidrs: ["127.0.0.0/8"],
    serviceCidrs: ["::1/128"],
    dnsServer: { host: "127.0.0.1", port: 53 },
    clusterDomain: "cluster.local",
    allow: [],
    token: undefined,
    tls: undefined,
    sessionTtlMs: 30_000,
    dialTimeoutMs: 1_000,
    tcpIdleTimeoutMs: 60_000,
    udpIdleTimeoutMs: 5_000,
    maxMessageSize: 128 * 1024,
    maxStreamsPerSession: 4096,
    maxSessions: 16,
    streamBufferBytes: 256 * 1024,
    ...overrides,
  };
}

export interface RunningManager {
  manager: Manager;
  url: string;
  port: number;
  logger: ReturnType<typeof recordingLogger>;
  close(): Promise<void>;
}

export async function startManager(
  overrides: Partial<ManagerConfig> = {},
  serve: Omit<ServeOptions, "onListen"> = {},
): Promise<RunningManager> {
  const logger = recordingLogger();
  const manager = new Manager(testConfig(overrides), { logger });
  let port = 0;
  const listening = Promise.withResolvers<void>();
  const server = serveManager(manager, {
    ...serve,
    onListen: (a) => {
      port = a.port;
      listening.resolve();
    },
  });
  await listening.promise;
  return {
    manager,
    url: `http://127.0.0.1:${port}`,
    port,
    logger,
    close: async () => {
      manager.shutdown();
      await server.shutdown();
    },
  };
}

/** A TCP echo server: echoes every byte, answers FIN with FIN. `accepted` counts connections. */
export function tcpEchoServer(hostname = "127.0.0.1") {
  const listener = Deno.listen({ hostname, port: 0 });
  const conns = new Set<Deno.TcpConn>();
  const done: Promise<void>[] = [];
  const state = { accepted: 0, resets: 0 };
  const serve = async (c: Deno.TcpConn) => {
    conns.add(c);
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await c.read(buf);
        if (n === null) break;
        let o = 0;
        while (o < n) o += await c.write(buf.subarray(o, n));
      }
      await c.closeWrite();
    } catch (e) {
      if (e instanceof Deno.errors.ConnectionReset) state.resets++;
    } finally {
      conns.delete(c);
      try {
        c.close();
      } catch { /* already closed */ }
    }
  };
  const loop = (async () => {
    try {
      for await (const c of listener) {
        state.accepted++;
        done.push(serve(c));
      }
    } catch { /* closed */ }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    state,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* gone */ }
      }
      await loop;
      await Promise.all(done);
    },
  };
}

/** A UDP echo server on node:dgram. */
export async function udpEchoServer(host = "127.0.0.1") {
  const sock = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  sock.on(
    "message",
    (msg: Uint8Array, rinfo: { address: string; port: number }) => sock.send(msg, rinfo.port, rinfo.address),
  );
  await new Promise<void>((r) => sock.bind(0, host, () => r()));
  return {
    port: sock.address().port,
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}

export async function sha256(chunks: Uint8Array[]): Promise<string> {
  return Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", concat(chunks))),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/** Pseudo-random bytes from a seed (xorshift32): reproducible payloads without a large random source. */
export function seededBytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  const v = new Uint32Array(out.buffer, 0, n >>> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < v.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    v[i] = x >>> 0;
  }
  for (let i = v.length * 4; i < n; i++) out[i] = i & 0xff;
  return out;
}

/** The next item of a watch; a watch that ended is an error. */
export async function nextOf<T>(it: AsyncGenerator<T>): Promise<T> {
  const r = await it.next();
  if (r.done) throw new Error("watch ended");
  return r.value;
}

/** Writes `data` to a tunnel in 16 KiB pieces, waiting whenever it says so (also across a suspension), then a FIN. */
export async function writeAll(t: Tunnel, data: Uint8Array): Promise<void> {
  for (let o = 0; o < data.length; o += 16384) {
    if (!t.write(data.subarray(o, o + 16384))) await t.drained();
  }
  t.closeWrite();
}

/** Every chunk a tunnel reads until its FIN. */
export async function readAll(t: Tunnel): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (let c = await t.read(); c; c = await t.read()) out.push(c);
  return out;
}

/** Waits (every 10 ms, at most 10 s) until `f` holds. */
export async function until(what: string, f: () => boolean): Promise<void> {
  for (const t0 = Date.now(); !f(); await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() - t0 > 10_000) throw new Error(`${what} did not happen within 10 s`);
  }
}

/**
 * 12 MB each way between an agent's stream (`agent`) and a workstation's resumable one (`joined`, on session `ws`)
 * across a broken workstation connection and a resumed session: every byte once, in order, no reset on either side,
 * one resume counted, and the manager lets the stream go at the end. Returns the resumed session (the caller departs
 * it). `seed` varies the bytes.
 */
export async function carryAcrossResume(
  m: RunningManager,
  ws: ManagerSession,
  joined: Tunnel,
  agent: Tunnel,
  seed: number,
): Promise<ManagerSession> {
  const MB = 1 << 20;
  const up = seededBytes(12 * MB, seed), down = seededBytes(12 * MB, seed + 1);
  const agentWrites = writeAll(agent, up), agentReads = readAll(agent);
  const wsWrites = writeAll(joined, down), wsReads = readAll(joined);
  // Break the workstation's connection once a few MB went each way.
  while (joined.stats().bytesRead < 3 * MB || agent.stats().bytesRead < 3 * MB) {
    await new Promise((r) => setTimeout(r, 5));
  }
  const suspended = await ws.detach();
  assert.deepEqual(suspended, [joined]);
  assert.ok(joined.suspended);
  assert.equal(agent.finished, false, "the agent's side only pauses: the manager keeps its stream");
  const resumed = await connect(m.url, undefined, { resumeSessionId: ws.id });
  try {
    assert.equal(resumed.resumed, true);
    assert.deepEqual(await resumed.adopt(suspended), [true]);
    await Promise.all([agentWrites, wsWrites]);
    assert.equal(
      await sha256(await wsReads),
      await sha256([up]),
      "the workstation got the agent's bytes once, in order",
    );
    assert.equal(await sha256(await agentReads), await sha256([down]), "the agent got the workstation's bytes");
    assert.equal((await agent.ended).how, "closed", "no reset at the agent");
    assert.equal((await joined.ended).how, "closed", "no reset at the workstation");
    assert.match(
      await (await fetch(`${m.url}/metrics`)).text(),
      /tp_manager_stream_resumes_total\{result="resumed"\} 1/,
    );
    await until("the manager to let the stream go", () => m.manager.resumable.size === 0);
  } catch (e) {
    await resumed.depart();
    throw e;
  }
  return resumed;
}
