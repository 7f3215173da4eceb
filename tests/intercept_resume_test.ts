/**
 * Resumable intercepted connections on loopback, through tp's own client: an agent session and a workstation session
 * in this process, a real manager on an ephemeral port. A joined connection whose workstation asked for a resumable
 * stream carries every byte once, in order, both ways, across a broken workstation connection and a resumed session,
 * and the agent's side sees no reset; one whose workstation stays away past the grace is reset on both sides; a
 * workstation that does not ask (an older daemon) gets the relay as before: its connection ends with its link.
 */
import assert from "node:assert/strict";
import { connect, connectAgent, DialCode, type ManagerSession, Tunnel, TunnelResetError } from "../proto/mod.ts";
import type { InterceptConnection } from "../proto/messages.ts";
import {
  carryAcrossResume,
  nextOf,
  readAll,
  seededBytes,
  sha256,
  startManager,
  until,
  writeAll,
} from "./manager_fixture.ts";

const MB = 1 << 20;
const AGENT = {
  namespace: "default",
  workload: "web",
  podName: "web-0",
  podIp: "127.0.0.1",
  forwards: [{ agentPort: 9080, appPort: 8080 }],
  mounts: [],
  env: {},
  agentVersion: "test",
};

/** An agent and a workstation intercepting its port; `join` joins one connection the agent opens. */
async function intercepted(url: string) {
  const agent = await connectAgent(url, undefined, AGENT);
  const ws = await connect(url, undefined, { clientName: "laptop", namespace: "default" });
  const events = agent.watchAgent();
  await nextOf(events);
  const announced = ws.watchInterceptConnections();
  await ws.createIntercept("web", 0, 18080);
  await nextOf(events);
  /** `greeting`: what the local app says first, written with the join (before the manager's dial can arrive). */
  const join = async (resumable: boolean, greeting?: Uint8Array) => {
    const fromAgent = agent.openTunnel({
      protocol: "tcp",
      source: { ip: "127.0.0.9", port: 40000 },
      destination: { ip: "127.0.0.1", port: 8080 },
    }, { method: "AgentTunnel" });
    const c: InterceptConnection = await nextOf(announced);
    const joined = ws.joinIntercept(c, { code: DialCode.ok, message: "" }, { resumable });
    if (greeting) joined.write(greeting);
    const a = await fromAgent;
    assert.equal(a.dial.code, DialCode.ok);
    return { a, joined };
  };
  return { agent, ws, join, stop: () => Promise.all([events.return(undefined), announced.return(undefined)]) };
}

/** `p`, or a rejection when it has not settled within 10 s (what should end does not hang the test). */
function within<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within 10 s`)), 10_000);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

Deno.test("an intercepted connection carries 12 MB each way across a broken workstation connection and a resumed session", async () => {
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const x = await intercepted(m.url);
    sessions.push(x.agent);
    const ws = x.ws;
    const { a, joined } = await x.join(true);
    await until("the manager's dial naming the stream", () => joined.resumable);
    sessions.push(await carryAcrossResume(m, ws, joined, a, 1));
    await x.stop();
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("a local app that speaks first (before the manager's dial came) resumes with every byte, once, in order", async () => {
  // A server-first protocol (SSH, SMTP, MySQL): the daemon writes the app's greeting as soon as it joined, before the
  // manager's dial naming the stream arrives. The manager counts those bytes too.
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const x = await intercepted(m.url);
    sessions.push(x.agent);
    let ws = x.ws;
    const greeting = new TextEncoder().encode("SSH-2.0-OpenSSH_9.6\r\n");
    const { a, joined } = await x.join(true, greeting);
    await until("the manager's dial naming the stream", () => joined.resumable);
    const down = seededBytes(2 * MB, 3);
    const agentReads = readAll(a);
    const wsWrites = writeAll(joined, down);
    // Break the workstation's connection once the manager acknowledged some of it (an ack every 128 KiB).
    while (a.stats().bytesRead < MB) await new Promise((r) => setTimeout(r, 5));
    const suspended = await ws.detach();
    assert.deepEqual(suspended, [joined]);
    ws = await connect(m.url, undefined, { resumeSessionId: ws.id });
    sessions.push(ws);
    assert.deepEqual(await ws.adopt(suspended), [true], "the connection resumed");
    await wsWrites;
    a.closeWrite();
    assert.equal(
      await sha256(await agentReads),
      await sha256([greeting, down]),
      "the agent got the greeting and the rest, once, in order",
    );
    assert.equal((await joined.ended).how, "closed", "no reset at the workstation");
    await x.stop();
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("what each side sends, and its FIN, while the workstation is away arrives after the resume", async () => {
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const x = await intercepted(m.url);
    sessions.push(x.agent);
    const { a, joined } = await x.join(true);
    await until("the manager's dial naming the stream", () => joined.resumable);
    const suspended = await x.ws.detach();
    joined.write(new TextEncoder().encode("from the laptop"));
    joined.closeWrite();
    a.write(new TextEncoder().encode("from the cluster"));
    a.closeWrite();
    await until("the manager to hold the agent's FIN", () => [...m.manager.resumable.values()][0]!.buffered > 0);
    const ws = await connect(m.url, undefined, { resumeSessionId: x.ws.id });
    sessions.push(ws);
    assert.deepEqual(await ws.adopt(suspended), [true]);
    const text = async (t: Tunnel) => (await readAll(t)).map((c) => new TextDecoder().decode(c)).join("");
    assert.equal(await text(a), "from the laptop");
    assert.equal(await text(joined), "from the cluster");
    assert.equal((await a.ended).how, "closed");
    assert.equal((await joined.ended).how, "closed");
    await until("the manager to let the stream go", () => m.manager.resumable.size === 0);
    assert.equal(m.manager.metrics.streamsResumable.get(), 0);
    await x.stop();
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("an intercepted connection whose workstation stays away past the grace is reset on both sides", async () => {
  const m = await startManager({ resumeGraceMs: 300, sessionTtlMs: 30_000 });
  const sessions: ManagerSession[] = [];
  try {
    const x = await intercepted(m.url);
    sessions.push(x.agent);
    const { a, joined } = await x.join(true);
    await until("the manager's dial naming the stream", () => joined.resumable);
    a.write(new TextEncoder().encode("before"));
    assert.equal(new TextDecoder().decode((await joined.read())!), "before");
    const suspended = await x.ws.detach();
    // The agent's side hears the reset once the grace ended, without the workstation coming back.
    await assert.rejects(a.read(), TunnelResetError);
    assert.match((await a.ended).reason, /did not come back within 300 ms/);
    assert.equal(m.manager.resumable.size, 0);
    const ws = await connect(m.url, undefined, { resumeSessionId: x.ws.id });
    sessions.push(ws);
    assert.equal(ws.resumed, true);
    assert.deepEqual(await ws.adopt(suspended), [false]);
    await assert.rejects(joined.read(), TunnelResetError);
    await x.stop();
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("a local app that resets its connection while the link is down: the cluster's side hears it once the session resumes", async () => {
  // A grace far longer than the test's bounded waits: the reset must come with the resume, not with the grace's end.
  const m = await startManager({ resumeGraceMs: 120_000 });
  const sessions: ManagerSession[] = [];
  try {
    const x = await intercepted(m.url);
    sessions.push(x.agent);
    const { a, joined } = await x.join(true);
    await until("the manager's dial naming the stream", () => joined.resumable);
    a.write(new TextEncoder().encode("before"));
    assert.equal(new TextDecoder().decode((await joined.read())!), "before");
    const suspended = await x.ws.detach();
    assert.deepEqual(suspended, [joined]);
    joined.reset("connection reset"); // the local app's RST, as pipeSocket passes it on
    const ws = await connect(m.url, undefined, { resumeSessionId: x.ws.id });
    sessions.push(ws);
    assert.deepEqual(await ws.adopt(suspended), [false], "it does not resume");
    await assert.rejects(within(a.read(), "the agent's side to hear the reset"), TunnelResetError);
    assert.match((await a.ended).reason, /connection reset/);
    await until("the manager to let the stream go", () => m.manager.resumable.size === 0);
    await x.stop();
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("the agent's session ends before the workstation's dial result came: the workstation's stream is reset, nothing is left", async () => {
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const agent = await connectAgent(m.url, undefined, AGENT);
    const ws = await connect(m.url, undefined, { clientName: "laptop", namespace: "default" });
    sessions.push(ws);
    const events = agent.watchAgent();
    await nextOf(events);
    const announced = ws.watchInterceptConnections();
    await ws.createIntercept("web", 0, 18080);
    await nextOf(events);
    const fromAgent = agent.openTunnel({
      protocol: "tcp",
      source: { ip: "127.0.0.9", port: 40000 },
      destination: { ip: "127.0.0.1", port: 8080 },
    }, { method: "AgentTunnel" });
    const c: InterceptConnection = await nextOf(announced);
    // A workstation whose dial result is late (its open frame only: no `dial` given), asking for a resumable stream.
    const late = new Tunnel(ws.channel, ws.id, {
      protocol: "tcp",
      source: c.source!,
      destination: { ip: "127.0.0.1", port: c.localPort },
    }, { method: "InterceptTunnel", connectionId: c.connectionId, resumable: true });
    const gauge = () => m.manager.metrics.streams.get({ protocol: "intercept" });
    const held = () => m.manager.sessions.get(ws.id)!.streams.size; // its watch, and the connection once joined
    await until("the workstation to join the connection", () => held() === 2);
    await events.return(undefined);
    await agent.depart();
    await fromAgent.catch(() => {}); // settled: the agent's side is gone
    await assert.rejects(within(late.read(), "the workstation's stream to end"), TunnelResetError, "it hears a reset");
    await until("the manager to let the connection go", () => gauge() === 0);
    assert.equal(held(), 1, "the workstation's session holds its watch only");
    await announced.return(undefined);
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("a workstation that does not ask for a resumable intercept stream gets the relay: its link's end resets it", async () => {
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const x = await intercepted(m.url);
    sessions.push(x.agent);
    const { a, joined } = await x.join(false);
    a.write(new TextEncoder().encode("ping"));
    assert.equal(new TextDecoder().decode((await joined.read())!), "ping");
    joined.write(new TextEncoder().encode("pong"));
    assert.equal(new TextDecoder().decode((await a.read())!), "pong");
    assert.equal(joined.resumable, false);
    assert.equal(m.manager.resumable.size, 0);
    assert.deepEqual(await x.ws.detach(), [], "nothing to resume");
    await assert.rejects(a.read(), TunnelResetError);
    await x.stop();
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});
