/**
 * Resumable mount streams on loopback, through tp's own client: an agent session and a workstation session in this
 * process, a real manager on an ephemeral port; the agent's side of the mount stream stands in for its sftp-server
 * (the bytes are what matters here; tests/volumes_resume_lab_test.ts runs real sshfs and sftp-server). A MountTunnel
 * that asks for a resumable stream carries every byte once, in order, both ways, across a broken workstation
 * connection and a resumed session, and the agent's side sees no reset; one whose workstation stays away past the
 * grace is reset on both sides; a workstation that does not ask (an older daemon) gets the relay as before; an agent
 * that refuses the mount is refused as before.
 */
import assert from "node:assert/strict";
import { connect, connectAgent, DialCode, type ManagerSession, TunnelResetError } from "../proto/mod.ts";
import type { AgentEvent, DialResult } from "../proto/messages.ts";
import { carryAcrossResume, nextOf, startManager } from "./manager_fixture.ts";

const AGENT = {
  namespace: "default",
  workload: "web",
  podName: "web-0",
  podIp: "127.0.0.1",
  forwards: [{ agentPort: 9080, appPort: 8080 }],
  mounts: ["/data"],
  env: {},
  agentVersion: "test",
};

/** An agent and a workstation intercepting its port; `mount` opens a mount stream the agent answers with `dial`. */
async function intercepted(url: string) {
  const agent = await connectAgent(url, undefined, AGENT);
  const ws = await connect(url, undefined, { clientName: "laptop", namespace: "default" });
  const events = agent.watchAgent();
  await nextOf(events);
  const info = await ws.createIntercept("web", 0, 18080);
  await nextOf(events);
  const mount = async (resumable: boolean, dial: DialResult = { code: DialCode.ok, message: "" }) => {
    const opened = ws.openMount(info.id, { resumable });
    const ev: AgentEvent = await nextOf(events);
    assert.ok(ev.sftp, "the agent is asked for an sftp-server");
    const a = agent.joinMount(ev.sftp.connectionId, dial);
    return { a, mounted: await opened };
  };
  return { agent, ws, mount, stop: () => events.return(undefined) };
}

Deno.test("a resumable mount stream carries 12 MB each way across a broken workstation connection and a resumed session", async () => {
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const x = await intercepted(m.url);
    sessions.push(x.agent);
    const ws = x.ws;
    const { a, mounted } = await x.mount(true);
    assert.equal(mounted.dial.code, DialCode.ok);
    assert.equal(mounted.resumable, true, "the manager's dial names the stream");
    sessions.push(await carryAcrossResume(m, ws, mounted, a, 3));
    await x.stop();
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("a mount stream whose workstation stays away past the grace is reset on both sides", async () => {
  const m = await startManager({ resumeGraceMs: 300, sessionTtlMs: 30_000 });
  const sessions: ManagerSession[] = [];
  try {
    const x = await intercepted(m.url);
    sessions.push(x.agent);
    const { a, mounted } = await x.mount(true);
    assert.equal(mounted.resumable, true);
    a.write(new TextEncoder().encode("before"));
    assert.equal(new TextDecoder().decode((await mounted.read())!), "before");
    const suspended = await x.ws.detach();
    // The agent's side hears the reset once the grace ended (its sftp-server then ends), without the workstation.
    await assert.rejects(a.read(), TunnelResetError);
    assert.match((await a.ended).reason, /did not come back within 300 ms/);
    assert.equal(m.manager.resumable.size, 0);
    const ws = await connect(m.url, undefined, { resumeSessionId: x.ws.id });
    sessions.push(ws);
    assert.equal(ws.resumed, true);
    assert.deepEqual(await ws.adopt(suspended), [false]);
    await assert.rejects(mounted.read(), TunnelResetError);
    await x.stop();
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("a mount stream not asked to be resumable is relayed as before: its link's end resets it", async () => {
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const x = await intercepted(m.url);
    sessions.push(x.agent);
    const { a, mounted } = await x.mount(false);
    assert.equal(mounted.dial.code, DialCode.ok);
    assert.equal(mounted.resumable, false);
    a.write(new TextEncoder().encode("ping"));
    assert.equal(new TextDecoder().decode((await mounted.read())!), "ping");
    mounted.write(new TextEncoder().encode("pong"));
    assert.equal(new TextDecoder().decode((await a.read())!), "pong");
    assert.equal(m.manager.resumable.size, 0);
    assert.deepEqual(await x.ws.detach(), [], "nothing to resume");
    await assert.rejects(a.read(), TunnelResetError);
    await x.stop();
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});

Deno.test("an agent that refuses a resumable mount stream is refused as before: its reason reaches the workstation", async () => {
  const m = await startManager();
  const sessions: ManagerSession[] = [];
  try {
    const x = await intercepted(m.url);
    sessions.push(x.agent, x.ws);
    const { mounted } = await x.mount(true, { code: DialCode.refused, message: "no sftp-server in the agent" });
    assert.equal(mounted.dial.code, DialCode.refused);
    assert.equal(mounted.dial.message, "no sftp-server in the agent");
    assert.equal(mounted.resumable, false);
    assert.equal(m.manager.resumable.size, 0);
    await x.stop();
  } finally {
    for (const s of sessions) await s.depart();
    await m.close();
  }
});
