import assert from "node:assert/strict";
import { versionSkew } from "./link.ts";

Deno.test("versionSkew() is silent for equal versions and names the older side otherwise", () => {
  assert.equal(versionSkew("0.1.0", "0.1.0"), null);
  assert.match(
    versionSkew("0.2.0", "0.1.3")!,
    /the traffic-manager \(0\.1\.3\) is older: run tp install --image .*:0\.2\.0/,
  );
  assert.match(versionSkew("0.1.0", "0.10.0")!, /this tp \(0\.1\.0\) is older: install the newer tp/);
});

// ---- reconnection, against in-process managers on loopback ----

import { type ReconnectKind } from "./link.ts";
import { ManagerLink } from "./link.ts";
import type { ConnectSettings } from "./settings.ts";
import { type RunningManager, startManager } from "../../tests/manager_fixture.ts";

function settingsFor(url: string): ConnectSettings {
  return {
    managerUrl: url,
    token: "",
    namespace: "default",
    kubeconfig: "",
    context: "",
    managerNamespace: "",
    alsoProxy: [],
    neverProxy: [],
    allowConflictingSubnets: [],
    warnPrefix: "",
  };
}

/** A link whose events are recorded; `reconnected` resolves with the next reconnection's kind. */
async function openLink(m: RunningManager, clock?: { wall(): number; mono(): number }) {
  const logs: string[] = [];
  let next = Promise.withResolvers<ReconnectKind>();
  const link = await ManagerLink.open(settingsFor(m.url), {
    stage: () => {},
    log: (l) => logs.push(l),
    gaveUp: (e) => next.reject(e),
    reconnected: (_s, kind) => {
      next.resolve(kind);
      next = Promise.withResolvers();
    },
  }, { clockCheckMs: 0, ...(clock ? { clock } : {}) });
  return { link, logs, reconnected: () => next.promise };
}

Deno.test("ManagerLink learns from the manager's identity that a restarted manager is a new one, and says so", async () => {
  let m = await startManager();
  const { port } = m;
  const { link, logs, reconnected } = await openLink(m);
  try {
    const firstId = link.session.clusterInfo.managerId;
    assert.match(firstId, /^[0-9a-f-]{36}$/);
    await m.close();
    m = await startManager({ listen: { host: "127.0.0.1", port } });
    assert.equal(await reconnected(), "manager-restarted");
    assert.notEqual(link.session.clusterInfo.managerId, firstId);
    const s = link.status();
    assert.equal(s.managerRestarts, 1);
    assert.deepEqual((s.lastReconnect as { kind: string }).kind, "manager-restarted");
    assert.ok(logs.some((l) => /a new traffic-manager \(it restarted\)/.test(l)), logs.join("\n"));
  } finally {
    await link.close();
    await m.close();
  }
});

Deno.test("after a clock jump, a link whose session the manager forgot reconnects at once, not at its next keepalive", async () => {
  const m = await startManager({ sessionTtlMs: 60_000 }); // keepalives every 20 s
  let slept = 0;
  const clock = { wall: () => Date.now() + slept, mono: () => performance.now() };
  const { link, logs, reconnected } = await openLink(m, clock);
  try {
    // The machine slept past the session's lifetime: the manager expired it.
    m.manager.sessions.end(link.session.id, "expired");
    slept = 120_000;
    link.checkClock();
    assert.equal(await reconnected(), "new-session");
    assert.equal(link.status().clockJumps, 1);
    assert.ok(logs.some((l) => /the wall clock jumped 120\.0 s ahead .*checking the session now/.test(l)));
  } finally {
    await link.close();
    await m.close();
  }
});

Deno.test("after a clock jump, a reconnecting link tries again at once instead of sleeping out its backoff", async () => {
  let m = await startManager();
  const { port } = m;
  let slept = 0, later = 0;
  const clock = { wall: () => Date.now() + slept, mono: () => performance.now() + later };
  const { link, reconnected } = await openLink(m, clock);
  try {
    await m.close();
    for (let i = 0; i < 100 && link.state !== "reconnecting"; i++) await new Promise((r) => setTimeout(r, 10));
    later = 120_000; // the outage is two minutes old now: the backoff waits 5 s between attempts
    await new Promise((r) => setTimeout(r, 1_200)); // an attempt fails and the 5 s wait begins
    m = await startManager({ listen: { host: "127.0.0.1", port } });
    const t0 = performance.now();
    slept = later + 60_000; // the monotonic clock stood still for the last 60 s
    link.checkClock();
    await reconnected();
    assert.ok(performance.now() - t0 < 4_000, `reconnected ${performance.now() - t0} ms after the jump`);
  } finally {
    await link.close();
    await m.close();
  }
});
