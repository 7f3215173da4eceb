/**
 * The resolv.conf guard (cli/dns/resolv_guard.ts) with real processes: a stand-in daemon (tests/dns_guard_child.ts)
 * that starts the real guard shell, which runs the real `tp _restore-dns`, on a resolv.conf in a temporary directory.
 * Every process is ended by its pid (or, for the process-group case, its group's id).
 */
import assert from "node:assert/strict";
import { RESTORE_DNS_COMMAND as MAIN_NAME } from "../cli/main.ts";
import { repairResolvConf } from "../cli/dns/resolv_conf.ts";
import { RESTORE_DNS_COMMAND, restoreAfterDaemon } from "../cli/dns/resolv_guard.ts";
import { applyResolvConf } from "../cli/dns/resolv_conf.ts";
import { pidAlive } from "../cli/process.ts";
import { ROOT } from "./lab.ts";

const ORIGINAL = "# the network's\nnameserver 198.18.2.53\nsearch home.test\n";

interface Daemon {
  pid: number;
  guard: number;
  quit(): Promise<string>;
  /** Waits until the process has exited (after a kill). */
  ended(): Promise<void>;
}

/** Starts the stand-in daemon, in a process group of its own (setsid), as `tp connect` starts the real one. */
async function startDaemon(path: string, stateDir: string): Promise<Daemon> {
  const child = new Deno.Command("setsid", {
    args: [Deno.execPath(), "run", "-A", `${ROOT}/tests/dns_guard_child.ts`, path, stateDir],
    env: { TP_TOKEN: "guard-test-secret" },
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const writer = child.stdin.getWriter();
  const next = async () => JSON.parse((await lines.read()).value ?? "null");
  const ready = await next();
  assert.ok(ready?.guard, "the stand-in daemon started its guard");
  const ended = async () => {
    await writer.close().catch(() => {});
    await lines.cancel().catch(() => {});
    await child.status;
  };
  return {
    pid: child.pid,
    guard: ready.guard,
    async quit() {
      await writer.write(new TextEncoder().encode("quit\n"));
      const r = await next();
      await ended();
      return r.restore;
    },
    ended,
  };
}

/** Waits (at most 10 s) until `pid` has exited; returns how long that took. */
async function waitGone(pid: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < 1000 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(!pidAlive(pid), `pid ${pid} still runs after 10 s`);
  return performance.now() - t0;
}

async function withFiles(fn: (path: string, stateDir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "tp-guard-" });
  try {
    await Deno.writeTextFile(`${dir}/resolv.conf`, ORIGINAL);
    await fn(`${dir}/resolv.conf`, `${dir}/state`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("the guard's internal command has the name cli/main.ts runs", () => {
  assert.equal(RESTORE_DNS_COMMAND, MAIN_NAME);
});

Deno.test("after kill -9 of the daemon, the guard restores resolv.conf byte for byte within 1 s, logs it and exits", async () => {
  await withFiles(async (path, stateDir) => {
    const d = await startDaemon(path, stateDir);
    assert.match(await Deno.readTextFile(path), /^nameserver 198\.19\.0\.255$/m);
    const t0 = performance.now();
    Deno.kill(d.pid, "SIGKILL");
    await d.ended();
    await waitGone(d.guard);
    const ms = performance.now() - t0;
    assert.equal(await Deno.readTextFile(path), ORIGINAL);
    assert.ok(ms < 1_000, `restored ${ms.toFixed(0)} ms after the kill`);
    const log = await Deno.readTextFile(`${stateDir}/daemon.log`);
    assert.match(log, new RegExp(`dns guard: the daemon \\(pid ${d.pid}\\) ended without restoring DNS: restored`));
    assert.equal(await repairResolvConf(stateDir), null, "nothing is left for the next tp to repair");
  });
});

Deno.test("on quit the daemon restores resolv.conf itself and the guard exits doing nothing", async () => {
  await withFiles(async (path, stateDir) => {
    const d = await startDaemon(path, stateDir);
    const environ = await Deno.readTextFile(`/proc/${d.guard}/environ`);
    assert.doesNotMatch(environ, /TP_TOKEN|guard-test-secret/, "the daemon's token stays with the daemon");
    assert.equal(await d.quit(), "restored");
    await waitGone(d.guard);
    assert.equal(await Deno.readTextFile(path), ORIGINAL);
    assert.equal(await Deno.stat(`${stateDir}/daemon.log`).then(() => true, () => false), false);
  });
});

Deno.test("after kill -9, the guard leaves a resolv.conf another program rewrote since", async () => {
  await withFiles(async (path, stateDir) => {
    const d = await startDaemon(path, stateDir);
    await Deno.writeTextFile(path, "nameserver 198.18.7.7\n");
    Deno.kill(d.pid, "SIGKILL");
    await d.ended();
    await waitGone(d.guard);
    assert.equal(await Deno.readTextFile(path), "nameserver 198.18.7.7\n");
    assert.match(await Deno.readTextFile(`${stateDir}/daemon.log`), /was changed by something else.*kept that change/);
  });
});

Deno.test("with the daemon's whole process group killed, the guard dies too and the repair restores", async () => {
  await withFiles(async (path, stateDir) => {
    const d = await startDaemon(path, stateDir);
    Deno.kill(-d.pid, "SIGKILL");
    await d.ended();
    await waitGone(d.guard);
    assert.notEqual(await Deno.readTextFile(path), ORIGINAL);
    assert.match((await repairResolvConf(stateDir))!, /tp found DNS settings left by a tp that is gone: restored/);
    assert.equal(await Deno.readTextFile(path), ORIGINAL);
  });
});

Deno.test("restoreAfterDaemon() leaves a change made by another tp, and waits for a dying daemon (bounded)", async () => {
  await withFiles(async (path, stateDir) => {
    await applyResolvConf({ path, stateDir }, { dnsAddress: "198.19.0.255", searchDomains: [], pid: 4194305 });
    const other = await restoreAfterDaemon(stateDir, 4194306, { alive: () => false });
    assert.equal(other.action, "daemon-running");
    assert.notEqual(await Deno.readTextFile(path), ORIGINAL);
    const still = await restoreAfterDaemon(stateDir, 4194305, { alive: () => true, waitMs: 30 });
    assert.equal(still.action, "daemon-running");
    assert.match(still.message, /closed its DNS guard but still runs/);
    let polls = 0;
    const r = await restoreAfterDaemon(stateDir, 4194305, { alive: () => ++polls < 3 });
    assert.equal(r.action, "restored");
    assert.equal(await Deno.readTextFile(path), ORIGINAL);
  });
});
