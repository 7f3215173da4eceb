/**
 * resolv.conf survives a failed or interrupted write: ENOSPC injected into tp's write to it (strace's fault injection,
 * on that path only), and the daemon killed at the moment it writes (SIGKILL on entry, the write not done: strace
 * delivers the signal only with an error injected too). The workstation's /etc/resolv.conf is a bind
 * mount of /etc/netns/<id>-ws/resolv.conf, so tp rewrites it in place, as on a container or under netns.
 */
import assert from "node:assert/strict";
import { forceQuit, inNs, LAB, MANAGER_URL, startLabManager, STATE_DIR, TP, tp } from "./connect_fixture.ts";
import { requireTools } from "./lab.ts";

const FILE = `/etc/netns/${LAB.namespaces.workstation}/resolv.conf`;

/** `tp connect --foreground` in the workstation under strace, with `inject` applied to writes to /etc/resolv.conf. */
function connectInjected(inject: string) {
  return inNs("ws", [
    "strace",
    "-f",
    "-qq",
    "-o",
    "/dev/null",
    "-P",
    "/etc/resolv.conf",
    "-e",
    "trace=write",
    "-e",
    `inject=write:${inject}`,
    TP,
    "connect",
    "--foreground",
    "--manager-url",
    MANAGER_URL,
  ], { timeoutMs: 60_000, env: { ...Deno.env.toObject(), TP_STATE_DIR: STATE_DIR, NO_COLOR: "1" } });
}

async function stateFiles(): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(STATE_DIR)) names.push(e.name);
  } catch { /* none */ }
  return names.filter((n) => n.startsWith("resolv.conf")).sort();
}

Deno.test("resolv.conf is intact when tp's write to it fails with ENOSPC, and tp connect says why", async () => {
  requireTools("strace");
  const manager = await startLabManager();
  const original = await Deno.readFile(FILE);
  try {
    const r = await connectInjected("error=ENOSPC");
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /cannot set up DNS: cannot write \/etc\/resolv\.conf: No space left on device .*; it still holds its original content/,
    );
    assert.deepEqual(await Deno.readFile(FILE), original);
    assert.deepEqual(await stateFiles(), [], "no backup left to restore");
    const quit = await tp(["quit"]);
    assert.equal(quit.code, 0, quit.stderr);
    assert.deepEqual(await Deno.readFile(FILE), original);
  } finally {
    await forceQuit();
    await manager.stop();
    await Deno.writeFile(FILE, original);
  }
});

Deno.test("a daemon killed as it writes resolv.conf leaves it whole, and its DNS guard cleans up", async () => {
  requireTools("strace");
  const manager = await startLabManager();
  const original = await Deno.readFile(FILE);
  try {
    const r = await connectInjected("error=EIO:signal=SIGKILL");
    assert.notEqual(r.code, 0, r.stderr);
    assert.deepEqual(await Deno.readFile(FILE), original);
    // The daemon's DNS guard (cli/dns/resolv_guard.ts) saw it die and cleaned up: the file held its original
    // content, so only tp's record and backup go. (With the guard killed too, the next tp quit does it: see
    // tests/dns_connect_test.ts.)
    for (let i = 0; i < 50 && (await stateFiles()).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await stateFiles(), [], "the guard left tp's record");
    const quit = await tp(["quit"]);
    assert.equal(quit.code, 0, quit.stderr);
    assert.deepEqual(await Deno.readFile(FILE), original);
  } finally {
    await forceQuit();
    await manager.stop();
    await Deno.writeFile(FILE, original);
  }
});
