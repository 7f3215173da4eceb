/**
 * Session resume on the lab: the workstation's link to the cluster (the lab's one veth) goes down in the middle of a
 * 100 MB TCP echo and an iperf3 run through tp, and comes back; tp finds the hanging connection (HTTP/2 PING),
 * reconnects when the link is back, resumes its session, and every open connection carries on where it was: the
 * echo's hash matches, nothing is reset, and tp status counts one resume. A cut longer than the manager's grace
 * period resets the open connections cleanly, and new ones work.
 */
import assert from "node:assert/strict";
import { labService, requireTools, ROOT } from "./lab.ts";
import {
  cutLink,
  forceQuit,
  inNs,
  iperf3,
  LAB,
  MANAGER_URL,
  resumeEcho,
  setWorkstationLink,
  startLabManager,
  STATE_DIR,
  tp,
} from "./connect_fixture.ts";

const echo = labService(LAB, "echo");
const HTTP = echo.ports["http"]!.port;

async function status(): Promise<{ manager: Record<string, number | string> }> {
  const r = await tp(["status", "-o", "json"]);
  return JSON.parse(r.stdout);
}

/** What tp and the manager say, for a failure's message. */
async function diagnosis(what: string): Promise<string> {
  const st = await tp(["status", "-o", "json"]);
  const log = await Deno.readTextFile(`${STATE_DIR}/daemon.log`).catch(() => "");
  const metrics = await inNs("ws", ["curl", "-s", "-m", "2", `${MANAGER_URL}/metrics`]);
  return `${what}\n--- tp status\n${st.stdout}\n--- daemon.log\n${log.split("\n").slice(-30).join("\n")}\n` +
    `--- manager metrics\n${metrics.stdout.split("\n").filter((l) => /resum|buffered|streams/.test(l)).join("\n")}`;
}

/**
 * Cuts the link: down until tp noticed (it says reconnecting), `ms` more, then up. Returns when it came back
 * (Date.now), for the time to the first byte after it.
 */
async function cut(ms: number, during?: () => Promise<void>): Promise<number> {
  const { noticedMs, upAt } = await cutLink(ms, during);
  assert.ok(noticedMs >= 0, "tp notices a link that went down");
  return upAt;
}

/** A UDP flow to the echo service for `seconds`: one datagram every 50 ms from one source port. */
function udpFlow(seconds: number) {
  return inNs("ws", [
    Deno.execPath(),
    "run",
    "-A",
    "--cached-only",
    `${ROOT}/tests/udp_flow_client.ts`,
    echo.serviceIp,
    String(echo.ports["udp-echo"]!.port),
    String(seconds),
  ], { timeoutMs: 120_000 });
}

for (const cutMs of [3_000, 10_000]) {
  Deno.test(`a 100 MB TCP echo and a UDP flow through tp survive the link cut for ${cutMs / 1000} s: same hash, no reset, one resume`, async () => {
    const manager = await startLabManager();
    try {
      const c = await tp(["connect", "--manager-url", MANAGER_URL]);
      assert.equal(c.code, 0, c.stderr);
      const client = resumeEcho(100, 25);
      const udp = udpFlow(cutMs / 1000 + 12);
      await new Promise((r) => setTimeout(r, 1_500));
      // While the link is down, tp status says the connections wait for it, and until when.
      let pausedSeen = "";
      const upAt = await cut(cutMs, async () => {
        for (let i = 0; i < 40 && !pausedSeen; i++) {
          const m = (await status()).manager;
          if (Number(m.streamsPaused) >= 1) pausedSeen = (await tp(["status"])).stdout;
          else await new Promise((r) => setTimeout(r, 50));
        }
      });
      assert.match(
        pausedSeen,
        /resume: +the link is down: \d+ open connection\(s\) paused, waiting for it \(until \d\d:\d\d:\d\d UTC\)/,
      );
      const r = await client;
      assert.equal(r.code, 0, r.code === 0 ? "" : await diagnosis(r.stderr));
      const out = JSON.parse(r.stdout);
      assert.equal(out.error, "", "no reset");
      assert.equal(out.received, out.sent);
      assert.equal(out.equal, true, "the echo's hash matches");
      assert.ok(out.maxGapMs >= cutMs, `the echo paused (${out.maxGapMs} ms)`);
      const firstByte = out.firstAfterGapAt - upAt;
      console.log(`link back to first byte: ${firstByte} ms`);
      assert.ok(firstByte < 2_000, `bytes flowed again ${firstByte} ms after the link came back`);
      const m = (await status()).manager;
      assert.equal(m.resumes, 1);
      assert.ok(Number(m.streamsResumed) >= 1);
      assert.equal(m.streamsLost, 0);
      assert.match((await tp(["status"])).stdout, /resumed 1x, \d+ connection\(s\) carried on/);
      const u = await udp;
      assert.equal(u.code, 0, u.stderr);
      const flow = JSON.parse(u.stdout);
      assert.deepEqual(flow.errors, [], "the UDP flow saw no error");
      assert.ok(flow.lastReplyAt > upAt + 2_000, "the UDP flow's echoes came back after the link did, and went on");
    } finally {
      await setWorkstationLink("up");
      await forceQuit();
      await manager.stop();
    }
  });
}

Deno.test("an iperf3 run through tp finishes across a 3 s cut of the link", async () => {
  requireTools("iperf3");
  const manager = await startLabManager();
  try {
    const c = await tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(c.code, 0, c.stderr);
    const run = iperf3({ seconds: 8, timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 2_000));
    await cut(3_000);
    const r = await run;
    assert.equal(r.code, 0, `iperf3: ${r.stdout.slice(-2000)}${r.stderr}`);
    const result = JSON.parse(r.stdout);
    assert.equal(result.error, undefined);
    assert.ok(result.end.sum_received.bytes > 0);
    assert.equal((await status()).manager.resumes, 1);
  } finally {
    await setWorkstationLink("up");
    await forceQuit();
    await manager.stop();
  }
});

Deno.test("a cut longer than the manager's grace period resets the open connections cleanly; new ones work", async () => {
  const manager = await startLabManager(["--resume-grace", "2s"]);
  try {
    const c = await tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(c.code, 0, c.stderr);
    const client = resumeEcho(100, 10);
    await new Promise((r) => setTimeout(r, 1_000));
    await cut(4_000);
    const r = await client;
    const out = JSON.parse(r.stdout);
    assert.match(out.error, /reset/i, "the open connection was reset");
    // New connections work once tp is back (it reconnects within a quarter second of the link).
    let curl = { code: -1, stderr: "" };
    for (let i = 0; i < 20 && curl.code !== 0; i++) {
      curl = await inNs("ws", ["curl", "-sS", "-m", "5", `http://${echo.serviceIp}:${HTTP}/`]);
      if (curl.code !== 0) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(curl.code, 0, curl.stderr);
    const m = (await status()).manager;
    assert.equal(m.streamsLost, 1);
  } finally {
    await setWorkstationLink("up");
    await forceQuit();
    await manager.stop();
  }
});
