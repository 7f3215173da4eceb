/**
 * Intercepted connections across a broken workstation link, on the lab: a pod runs its app and `tp agent`; the
 * workstation runs `tp connect`, intercepts the pod's TCP port to a local echo (the lab's services, calling themselves
 * "laptop"), and a client in the cluster namespace sends MBs through the intercept at a steady rate and reads the echo
 * (tests/resume_client.ts). The workstation's end of the lab's link goes down mid-transfer until tp notices, stays
 * down a while, and comes back:
 * - within the manager's resume grace: the transfer finishes with the same hash both ways and no reset, it only
 *   paused; tp status counts the connection among those carried on;
 * - past the grace (2 s here): the cluster's client gets a reset, the laptop's end of the connection is reset too,
 *   and new intercepted connections are served.
 * Real processes throughout: tp manager, tp agent, tp's daemon, the echo apps, the kernel's TCP on both ends.
 */
import assert from "node:assert/strict";
import { requireRoot, requireTools, ROOT } from "./lab.ts";
import {
  type ClusterProcess,
  cutLink,
  forceQuit,
  inNs,
  type LabManager,
  MANAGER_URL,
  setWorkstationLink,
  startLabManager,
  startLocalApp,
  STATE_DIR,
  tp,
} from "./connect_fixture.ts";
import { type LabPod, startPod, waitFor, whoAnswers } from "./lab_pod.ts";

const POD_IP = "198.19.128.20";
const HTTP = 8080, TCP = 7007; // the app's ports in the pod
const AGENT_HTTP = 9080, AGENT_TCP = 9007; // the agent's
const LOCAL_HTTP = 18080, LOCAL_TCP = 17007; // the workstation's

/** The echo client in the cluster namespace, through the agent's TCP port: `mb` MB at `rate` MB/s. */
function echoThroughIntercept(mb: number, rate: number) {
  return inNs("cluster", [
    Deno.execPath(),
    "run",
    "-A",
    "--cached-only",
    `${ROOT}/tests/resume_client.ts`,
    POD_IP,
    String(AGENT_TCP),
    String(mb),
    String(rate),
  ], { timeoutMs: 120_000 });
}

/** Connections the laptop's echo holds now (established, from its TCP port). */
async function laptopConnections(): Promise<number> {
  const s = await inNs("ws", ["ss", "-Htn", "state", "established", `( sport = :${LOCAL_TCP} )`]);
  return s.stdout.split("\n").filter((l) => l.trim()).length;
}

async function status(): Promise<{ manager: Record<string, number | string> }> {
  return JSON.parse((await tp(["status", "-o", "json"])).stdout);
}

/** A manager with `extra` flags, the pod with its agent, the laptop's echo, and both ports intercepted. */
async function setUp(extra: string[]) {
  const manager: LabManager = await startLabManager(extra);
  let pod: LabPod | undefined, agent: ClusterProcess | undefined, local: ClusterProcess | undefined;
  const tearDown = async () => {
    await setWorkstationLink("up");
    await forceQuit();
    await agent?.stop();
    await pod?.stop();
    await local?.stop();
    await manager.stop();
  };
  try {
    await forceQuit();
    pod = await startPod({ name: "web", index: 0, podIp: POD_IP, httpPort: HTTP, tcpPort: TCP });
    agent = await pod.startAgent({
      managerUrl: MANAGER_URL,
      workload: "web",
      forwards: [`${AGENT_HTTP}:${HTTP}`, `${AGENT_TCP}:${TCP}`],
    });
    local = startLocalApp(LOCAL_HTTP, LOCAL_TCP);
    const c = await tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(c.code, 0, c.stderr);
    const i1 = await tp(["intercept", "web", "--port", `${LOCAL_TCP}:${TCP}`, "--mount=false"]);
    assert.equal(i1.code, 0, i1.stderr);
    const i2 = await tp(["intercept", "web", "--port", `${LOCAL_HTTP}:${HTTP}`, "--mount=false"]);
    assert.equal(i2.code, 0, i2.stderr);
    // The agent hears of its intercepted ports in order: once HTTP goes to the laptop, so does TCP.
    await waitFor("the laptop to answer the intercepted port", async () => {
      return await whoAnswers(POD_IP, AGENT_HTTP, 5) === "laptop";
    });
    return { manager, tearDown };
  } catch (e) {
    await tearDown();
    throw e;
  }
}

/** The daemon's log's last lines, for a failure's message. */
async function diagnosis(what: string): Promise<string> {
  const log = await Deno.readTextFile(`${STATE_DIR}/daemon.log`).catch(() => "");
  return `${what}\n--- daemon.log\n${log.split("\n").slice(-30).join("\n")}`;
}

Deno.test({
  name: "an intercepted 40 MB echo survives a 3 s cut of the workstation's link: same hash, no reset, a pause",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  requireRoot();
  requireTools("ss", "curl");
  const { tearDown } = await setUp([]);
  try {
    const client = echoThroughIntercept(40, 8);
    await waitFor("the transfer to reach the laptop's echo", async () => await laptopConnections() === 1);
    await new Promise((r) => setTimeout(r, 1_000)); // a few MB each way before the cut
    const { noticedMs, upAt } = await cutLink(3_000);
    assert.ok(noticedMs >= 0, "tp notices a link that went down");
    const r = await client;
    assert.equal(r.code, 0, r.code === 0 ? "" : await diagnosis(r.stderr));
    const out = JSON.parse(r.stdout);
    assert.equal(out.error, "", `no reset: ${await diagnosis(out.error)}`);
    assert.equal(out.received, out.sent);
    assert.equal(out.equal, true, "the echo's hash matches");
    assert.ok(out.maxGapMs >= 3_000, `the echo paused (${out.maxGapMs} ms)`);
    console.log(`link back to first byte through the intercept: ${out.firstAfterGapAt - upAt} ms`);
    const m = (await status()).manager;
    assert.equal(m.resumes, 1);
    assert.ok(Number(m.streamsResumed) >= 1, "the intercepted connection carried on");
    assert.equal(m.streamsLost, 0);
  } finally {
    await tearDown();
  }
});

Deno.test({
  name: "an intercepted connection whose workstation's link stays down past the grace is reset on both sides",
  sanitizeOps: false,
  sanitizeResources: false,
}, async () => {
  requireRoot();
  requireTools("ss", "curl");
  const { tearDown } = await setUp(["--resume-grace", "2s"]);
  try {
    const client = echoThroughIntercept(40, 4);
    await waitFor("the transfer to reach the laptop's echo", async () => await laptopConnections() === 1);
    await new Promise((r) => setTimeout(r, 1_000));
    await cutLink(4_000);
    const r = await client;
    const out = JSON.parse(r.stdout);
    assert.match(out.error, /reset/i, "the cluster's client got a reset");
    await waitFor("the laptop's end of the connection to go", async () => await laptopConnections() === 0);
    assert.equal((await status()).manager.streamsLost, 1);
    // New intercepted connections are served.
    await waitFor("a new connection to reach the laptop", async () => {
      return await whoAnswers(POD_IP, AGENT_HTTP, 2) === "laptop";
    }, 20_000);
  } finally {
    await tearDown();
  }
});
