/**
 * The workstation's DNS never breaks, through `tp connect` on the lab (tests/connect_fixture.ts), with real clients
 * (getent, dig): the daemon's death restores resolv.conf with no tp command run (the guard, cli/dns/resolv_guard.ts).
 */
import assert from "node:assert/strict";
import { daemonPid, forceQuit, inNs, LAB, MANAGER_URL, startLabManager, STATE_DIR, tp } from "./connect_fixture.ts";
import { ensureLab } from "./lab.ts";
import { pidAlive } from "../cli/process.ts";

const RESOLV = `/etc/netns/${LAB.namespaces.workstation}/resolv.conf`;
const LAPTOP = LAB.workstationDns;

async function connected(fn: () => Promise<void>): Promise<void> {
  const manager = await startLabManager();
  try {
    const c = await tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(c.code, 0, `tp connect failed:\n${c.stderr}`);
    await fn();
  } finally {
    await forceQuit();
    await manager.stop();
  }
}

/** getent hosts NAME in the workstation namespace: the address, or null. */
async function getent(name: string): Promise<string | null> {
  const r = await inNs("ws", ["getent", "hosts", name], { timeoutMs: 15_000 });
  return r.code === 0 ? r.stdout.split(/\s+/)[0]! : null;
}

/** Waits, polling every 10 ms and at most `ms`, until `check` holds; returns how long it took, or null. */
async function within(ms: number, check: () => Promise<boolean> | boolean): Promise<number | null> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (await check()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 10));
  }
  return null;
}

Deno.test("after kill -9 of the daemon, resolv.conf is the original and other names resolve within 1 s, with no tp command", async () => {
  await ensureLab();
  const original = await Deno.readFile(RESOLV);
  await connected(async () => {
    assert.match(await Deno.readTextFile(RESOLV), /^nameserver 198\.19\.0\.255$/m);
    const pid = (await daemonPid())!;
    const status = JSON.parse((await tp(["status", "-o", "json"])).stdout);
    const guard = status.dns.guardPid as number;
    assert.ok(pidAlive(guard), "the daemon's DNS guard runs");
    const t0 = performance.now();
    Deno.kill(pid, "SIGKILL");
    const restored = await within(5_000, async () => {
      const now = await Deno.readFile(RESOLV);
      return now.length === original.length && now.every((b, i) => b === original[i]);
    });
    assert.ok(restored !== null, "resolv.conf came back");
    assert.equal(await getent(LAPTOP.hostName), LAPTOP.hostIp);
    const ms = performance.now() - t0;
    assert.ok(ms < 1_000, `a non-cluster name resolved ${ms.toFixed(0)} ms after the kill`);
    assert.ok(await within(5_000, () => !pidAlive(guard)) !== null, "the guard exited");
    const log = await Deno.readTextFile(`${STATE_DIR}/daemon.log`);
    assert.match(log, /dns guard: the daemon \(pid \d+\) ended without restoring DNS: restored the original/);
    // The next tp finds the DNS already restored, and says only what is left: the socket and state.
    const q = await tp(["quit"]);
    assert.equal(q.code, 0, q.stderr);
    assert.doesNotMatch(q.stderr, /DNS settings/);
    assert.deepEqual(await Deno.readFile(RESOLV), original);
  });
  assert.deepEqual(await Deno.readFile(RESOLV), original);
});
