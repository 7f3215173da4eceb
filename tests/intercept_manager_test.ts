/**
 * The manager's intercept methods on loopback, through tp's own client: an agent session and workstation sessions in
 * this process, a real manager on an ephemeral port. What each side sees: joined streams carry bytes and FINs both
 * ways; a workstation cannot join what was announced to another; methods are for their own kind of session; a
 * malformed frame ends its stream and not the session.
 */
import assert from "node:assert/strict";
import { connect, connectAgent, DialCode, GrpcError, type ManagerSession, Status } from "../proto/mod.ts";
import { encodeTunnelFrame, type InterceptConnection } from "../proto/messages.ts";
import { encodeFrame } from "../proto/grpc_web.ts";
import { Call } from "../proto/channel.ts";
import { nextOf, startManager } from "./manager_fixture.ts";

const AGENT = {
  namespace: "default",
  workload: "web",
  podName: "web-0",
  podIp: "127.0.0.1",
  forwards: [{ agentPort: 9080, appPort: 8080 }],
  mounts: [],
  env: { APP_GREETING: "hi" },
  agentVersion: "test",
};

/** `p`, or a failure naming `what` after `ms`. */
async function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what}`)), ms)));
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits (every 10 ms, at most `ms`) until the manager has logged `msg`. */
async function logged(m: { logger: { lines: { msg: string }[] } }, msg: string, ms = 10_000): Promise<void> {
  for (const t0 = Date.now(); !m.logger.lines.some((l) => l.msg === msg); await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() - t0 > ms) throw new Error(`the manager did not log "${msg}" within ${ms} ms`);
  }
}

const WAITING = "intercepted connections wait for the workstation's next watch";

async function readAll(t: { read(): Promise<Uint8Array | null> }): Promise<string> {
  let s = "";
  for (let c = await t.read(); c; c = await t.read()) s += new TextDecoder().decode(c);
  return s;
}

Deno.test("an intercepted connection: announced to its workstation, joined, bytes and FINs both ways", async () => {
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const agent = await connectAgent(m.url, undefined, AGENT);
    const ws = await connect(m.url, undefined, { clientName: "laptop", namespace: "default" });
    sessions.push(agent, ws);
    const events = agent.watchAgent();
    assert.deepEqual(await nextOf(events), { intercepts: { appPorts: [] } });
    const announced = ws.watchInterceptConnections();
    const info = await ws.createIntercept("web", 0, 18080);
    assert.equal(info.appPort, 8080);
    assert.deepEqual(info.env, { APP_GREETING: "hi" });
    assert.deepEqual(await nextOf(events), { intercepts: { appPorts: [8080] } });

    const fromAgent = agent.openTunnel({
      protocol: "tcp",
      source: { ip: "127.0.0.9", port: 40000 },
      destination: { ip: "127.0.0.1", port: 8080 },
    }, { method: "AgentTunnel" });
    const c: InterceptConnection = await nextOf(announced);
    assert.equal(c.localPort, 18080);
    assert.deepEqual(c.source, { ip: "127.0.0.9", port: 40000 });
    const joined = ws.joinIntercept(c, { code: DialCode.ok, message: "" });
    const t = await fromAgent;
    assert.equal(t.dial.code, DialCode.ok);
    t.write(new TextEncoder().encode("GET / from the cluster"));
    t.closeWrite();
    assert.equal(await readAll(joined), "GET / from the cluster");
    joined.write(new TextEncoder().encode("answer from the laptop"));
    joined.closeWrite();
    assert.equal(await readAll(t), "answer from the laptop");
    assert.equal((await t.ended).how, "closed");
    assert.equal((await joined.ended).how, "closed");
    assert.equal(m.manager.metrics.interceptConnections.get({ result: "joined" }), 1);

    // After leave, the agent is told to serve the port itself, and a stream it still opens is sent back (DENIED).
    assert.equal(await ws.removeIntercept("web"), 1);
    assert.deepEqual(await nextOf(events), { intercepts: { appPorts: [] } });
    const late = await agent.openTunnel({
      protocol: "tcp",
      source: { ip: "127.0.0.9", port: 40001 },
      destination: { ip: "127.0.0.1", port: 8080 },
    }, { method: "AgentTunnel" });
    assert.equal(late.dial.code, DialCode.denied);
    await events.return(undefined);
    await announced.return(undefined);
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("RemoveIntercept with an app port ends that port's intercept only; the other port stays intercepted", async () => {
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const agent = await connectAgent(m.url, undefined, {
      ...AGENT,
      forwards: [{ agentPort: 9080, appPort: 8080 }, { agentPort: 9007, appPort: 7007 }],
    });
    const ws = await connect(m.url, undefined, { clientName: "laptop", namespace: "default" });
    sessions.push(agent, ws);
    const events = agent.watchAgent();
    assert.deepEqual(await nextOf(events), { intercepts: { appPorts: [] } });
    await ws.createIntercept("web", 8080, 18080);
    await nextOf(events);
    await ws.createIntercept("web", 7007, 17007);
    assert.deepEqual(await nextOf(events), { intercepts: { appPorts: [7007, 8080] } });
    assert.equal(await ws.removeIntercept("web", 7007), 1);
    assert.deepEqual(await nextOf(events), { intercepts: { appPorts: [8080] } });
    assert.equal(await ws.removeIntercept("web", 7007), 0);
    assert.deepEqual((await ws.listAgents()).intercepts.map((i) => i.appPort), [8080]);
    await events.return(undefined);
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("a resumed workstation: its old connection's intercepted streams are reset at the agent, and a connection announced on its old watch is announced again, even after that watch ended", async () => {
  // A grace far longer than the test: what it checks is the order of events, never how fast they come.
  const m = await startManager({ interceptGraceMs: 60_000 });
  const sessions: ManagerSession[] = [];
  const agentTunnel = (port: number) =>
    agent.openTunnel({
      protocol: "tcp",
      source: { ip: "127.0.0.9", port },
      destination: { ip: "127.0.0.1", port: 8080 },
    }, { method: "AgentTunnel" });
  let agent!: ManagerSession;
  try {
    agent = await connectAgent(m.url, undefined, AGENT);
    const ws = await connect(m.url, undefined, { clientName: "laptop", namespace: "default" });
    sessions.push(agent, ws);
    const announced = ws.watchInterceptConnections();
    await ws.createIntercept("web", 8080, 18080);
    // One connection joined on the old connection, one announced there and never joined.
    const joinedAtAgent = agentTunnel(40000);
    ws.joinIntercept(await nextOf(announced), { code: DialCode.ok, message: "" });
    const first = await joinedAtAgent;
    assert.equal(first.dial.code, DialCode.ok);
    const waitingAtAgent = agentTunnel(40001);
    const lost = await nextOf(announced);

    // The workstation resumes its session on a new connection (the old one, as after a cut link, is not closed).
    const again = await connect(m.url, undefined, { clientName: "laptop", resumeSessionId: ws.id });
    sessions.push(again);
    assert.equal(again.resumed, true);
    const end = await within(5_000, first.ended, "the old connection's stream to end at the agent");
    assert.equal(end.how, "reset", "the joined stream of the old connection is reset at the agent");
    // The old connection's end reaches the manager before the new watch (as a FIN after a cut link may): what was
    // announced on it waits WATCH_GONE_GRACE_MS for the new watch instead of going to the app at once.
    await ws.close();
    await logged(m, WAITING);
    const announcedAgain = again.watchInterceptConnections();
    const c = await within(5_000, nextOf(announcedAgain), "announcement again on the new watch");
    assert.equal(c.connectionId, lost.connectionId);
    const joined = again.joinIntercept(c, { code: DialCode.ok, message: "" });
    const second = await waitingAtAgent;
    assert.equal(second.dial.code, DialCode.ok, "the connection waiting during the cut is served after it");
    second.write(new TextEncoder().encode("late but served"));
    second.closeWrite();
    assert.equal(await readAll(joined), "late but served");
    joined.closeWrite();
    assert.equal(await readAll(second), "");
    await Promise.all([second.ended, joined.ended]);
    await announced.return(undefined).catch(() => {});
    await announcedAgain.return(undefined);
  } finally {
    for (const s of sessions) await s.depart().catch(() => {});
    await m.close();
  }
});

Deno.test("a connection announced to a workstation whose watch went away goes to the pod's app when no new watch comes within the grace", async () => {
  const m = await startManager({ interceptGraceMs: 50 });
  const sessions: ManagerSession[] = [];
  try {
    const agent = await connectAgent(m.url, undefined, AGENT);
    const ws = await connect(m.url, undefined, { clientName: "laptop", namespace: "default" });
    sessions.push(agent, ws);
    const announced = ws.watchInterceptConnections();
    await ws.createIntercept("web", 8080, 18080);
    const fromAgent = agent.openTunnel({
      protocol: "tcp",
      source: { ip: "127.0.0.9", port: 40002 },
      destination: { ip: "127.0.0.1", port: 8080 },
    }, { method: "AgentTunnel" });
    await nextOf(announced); // announced, never joined
    // The session is kept (as after a cut link) while its connection, and with it the watch, goes away.
    const again = await connect(m.url, undefined, { clientName: "laptop", resumeSessionId: ws.id });
    sessions.push(again);
    await ws.close();
    await logged(m, WAITING);
    const t = await within(10_000, fromAgent, "the agent's answer after the grace");
    assert.equal(t.dial.code, DialCode.denied, "given back: the agent serves it from the pod's app");
    await announced.return(undefined).catch(() => {});
  } finally {
    for (const s of sessions) await s.depart().catch(() => {});
    await m.close();
  }
});

Deno.test("a workstation cannot join a connection announced to another, nor call an agent's methods", async () => {
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const agent = await connectAgent(m.url, undefined, AGENT);
    const ws = await connect(m.url, undefined, { clientName: "laptop" });
    const other = await connect(m.url, undefined, { clientName: "intruder" });
    sessions.push(agent, ws, other);
    const announced = ws.watchInterceptConnections();
    await ws.createIntercept("web", 8080, 18080);
    const fromAgent = agent.openTunnel({
      protocol: "tcp",
      source: { ip: "127.0.0.9", port: 40000 },
      destination: { ip: "127.0.0.1", port: 8080 },
    }, { method: "AgentTunnel" });
    const c = await nextOf(announced);
    const stolen = other.joinIntercept(c, { code: DialCode.ok, message: "" });
    const end = await stolen.ended;
    assert.equal(end.how, "error");
    assert.match(end.reason, /NOT_FOUND/);
    // The rightful workstation still gets it.
    const joined = ws.joinIntercept(c, { code: DialCode.refused, message: "nothing listens" });
    const t = await fromAgent;
    assert.equal(t.dial.code, DialCode.refused);
    joined.reset("nothing listens");
    t.reset("refused");
    await Promise.all([t.ended, joined.ended]);

    await assert.rejects(() => ws.agentDnsAnswer(1, new Uint8Array()), (e) => {
      return e instanceof GrpcError && e.code === Status.PERMISSION_DENIED;
    });
    await assert.rejects(() => agent.createIntercept("web", 8080, 1), (e) => {
      return e instanceof GrpcError && e.code === Status.PERMISSION_DENIED;
    });
    await announced.return(undefined);
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("a malformed frame on an AgentTunnel ends that stream, not the agent's session", async () => {
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const agent = await connectAgent(m.url, undefined, AGENT);
    sessions.push(agent);
    const call = new Call(agent.channel.open("/tp.manager.v1.Manager/AgentTunnel"), 1 << 20);
    call.stream.write(encodeFrame(new Uint8Array([0x12, 0x05, 0xff]))); // an open field whose length runs past the end
    call.stream.end();
    const s = await call.status;
    assert.equal(s.code, Status.INVALID_ARGUMENT);
    // The session lives on.
    const call2 = new Call(agent.channel.open("/tp.manager.v1.Manager/AgentTunnel"), 1 << 20);
    call2.stream.write(encodeFrame(encodeTunnelFrame({
      kind: "open",
      open: { sessionId: agent.id, protocol: 1, source: null, destination: { ip: "127.0.0.1", port: 8080 } },
    })));
    call2.stream.end();
    const dial = await call2.nextMessage();
    assert.ok(dial);
    assert.equal((await call2.status).code, Status.OK);
    assert.ok(m.manager.sessions.get(agent.id));
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("the agent port admits agents by their workload's credential and serves nothing else", async () => {
  const { Manager } = await import("../manager/server.ts");
  const { serveManager } = await import("../manager/listen.ts");
  const { recordingLogger } = await import("../manager/log.ts");
  const { testConfig } = await import("./manager_fixture.ts");
  // A test double of the Secret lookup (manager/agent_auth.ts reads tp-agent-<workload> through the API).
  const agentAuth = { check: (_ns: string, wl: string, token: string) => Promise.resolve(token === `cred-${wl}`) };
  const manager = new Manager(
    testConfig({ agentListen: { host: "127.0.0.1", port: 0 }, token: "main-token" }),
    { logger: recordingLogger(), agentAuth },
  );
  const agentPort = Promise.withResolvers<number>();
  const server = serveManager(manager, { onAgentListen: (a) => agentPort.resolve(a.port) });
  const url = `http://127.0.0.1:${await agentPort.promise}`;
  const sessions: ManagerSession[] = [];
  try {
    await assert.rejects(
      () => connectAgent(url, "cred-other", AGENT),
      (e) => e instanceof GrpcError && e.code === Status.UNAUTHENTICATED && !e.message.includes("cred-"),
    );
    const agent = await connectAgent(url, "cred-web", AGENT);
    sessions.push(agent);
    const events = agent.watchAgent();
    assert.deepEqual(await nextOf(events), { intercepts: { appPorts: [] } });
    await events.return(undefined);
    // A workstation's methods are not served there, with or without the manager's token.
    await assert.rejects(
      () => connect(url, "main-token", { clientName: "laptop" }),
      (e) => e instanceof GrpcError && e.code === Status.PERMISSION_DENIED,
    );
  } finally {
    for (const s of sessions) await s.depart();
    manager.shutdown();
    await server.shutdown();
  }
});

Deno.test("DNS for an intercepted namespace is answered by the intercepted workload's agent, and only by it", async () => {
  const dnsPacket = (await import("dns-packet")).default;
  const { Buffer } = await import("node:buffer");
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const web = await connectAgent(m.url, undefined, AGENT);
    const other = await connectAgent(m.url, undefined, { ...AGENT, workload: "api", podName: "api-0" });
    const ws = await connect(m.url, undefined, { clientName: "laptop", namespace: "default" });
    sessions.push(web, other, ws);
    const events = web.watchAgent();
    await nextOf(events);
    await ws.createIntercept("web", 8080, 18080);
    await nextOf(events); // the intercepted ports
    const query = new Uint8Array(dnsPacket.encode({
      id: 7,
      type: "query",
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name: "legacy-db.default.svc.cluster.local", type: "A", class: "IN" }],
    }));
    const asked = ws.dns(query);
    const ev = await nextOf(events);
    assert.ok(ev.dnsQuery);
    const reply = (ip: string) =>
      new Uint8Array(dnsPacket.encode({
        id: 7,
        type: "response",
        flags: dnsPacket.RECURSION_AVAILABLE,
        questions: [{ name: "legacy-db.default.svc.cluster.local", type: "A", class: "IN" }],
        answers: [{ type: "A", name: "legacy-db.default.svc.cluster.local", ttl: 5, class: "IN", data: ip }],
      }));
    // Another agent that learned the id answers first: ignored.
    await other.agentDnsAnswer(ev.dnsQuery.id, reply("198.18.66.66"));
    await web.agentDnsAnswer(ev.dnsQuery.id, reply("198.19.128.77"));
    const answer = dnsPacket.decode(Buffer.from(await asked));
    assert.equal(answer.id, 7);
    assert.deepEqual(answer.answers!.map((a) => (a as { data: unknown }).data), ["198.19.128.77"]);
    await events.return(undefined);
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});
