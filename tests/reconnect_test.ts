/**
 * The link to the manager on the lab: a manager killed and started again is a new manager (its identity changed);
 * tp resets what was open, keeps its device, routes and DNS, and new connections work within 2 s of the new manager
 * serving.
 */
import assert from "node:assert/strict";
import { labService } from "./lab.ts";
import { forceQuit, inNs, LAB, MANAGER_URL, startLabManager, STATE_DIR, tp, tpLinks } from "./connect_fixture.ts";

const echo = labService(LAB, "echo");
const HTTP = echo.ports["http"]!.port;
const TCP_ECHO = echo.ports["tcp-echo"]!.port;

/**
 * A TCP connection through tp to the echo service, held open (socat reading a pipe that stays open), checked to carry
 * bytes both ways; `exited` resolves with what socat said on stderr when it ended (a reset: "Connection reset by peer").
 */
async function openConnection(): Promise<{ exited: Promise<string>; kill(): void }> {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", LAB.namespaces.workstation, "socat", "-d", "-", `TCP:${echo.serviceIp}:${TCP_ECHO}`],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode("hello\n"));
  const r = child.stdout.getReader();
  const got = await r.read();
  assert.equal(new TextDecoder().decode(got.value), "hello\n");
  r.releaseLock();
  void child.stdout.cancel().catch(() => {});
  return {
    exited: new Response(child.stderr).text(),
    kill: () => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      w.close().catch(() => {});
    },
  };
}

Deno.test("a restarted manager: open connections are reset, new ones work within 2 s of it serving, and tp status says so", async () => {
  let manager = await startLabManager();
  let held: Awaited<ReturnType<typeof openConnection>> | undefined;
  try {
    const c = await tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(c.code, 0, c.stderr);
    held = await openConnection();
    const links = await tpLinks();
    const before = await inNs("ws", ["curl", "-sS", "-m", "5", `http://${echo.serviceIp}:${HTTP}/`]);
    assert.equal(before.code, 0, before.stderr);

    Deno.kill(manager.pid, "SIGKILL");
    await manager.stop();
    manager = await startLabManager();
    const serving = performance.now();
    let worked = -1;
    for (let i = 0; i < 50 && worked < 0; i++) {
      const r = await inNs("ws", ["curl", "-s", "-o", "/dev/null", "-m", "1", `http://${echo.serviceIp}:${HTTP}/`]);
      if (r.code === 0) worked = performance.now() - serving;
      else await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(
      worked >= 0 && worked < 2_000,
      `a new connection worked ${worked.toFixed(0)} ms after the manager served`,
    );
    const said = await held.exited;
    assert.match(said, /Connection reset by peer/, `the connection open across the restart was reset: ${said}`);

    assert.deepEqual(await tpLinks(), links, "the same device");
    const status = JSON.parse((await tp(["status", "-o", "json"])).stdout);
    assert.equal(status.manager.managerRestarts, 1);
    assert.equal(status.manager.lastReconnect.kind, "manager-restarted");
    assert.match((await tp(["status"])).stdout, /reconnected 1x; last at [\d:]+: a new manager \(it had restarted\)/);
    const log = await Deno.readTextFile(`${STATE_DIR}/daemon.log`);
    assert.match(log, /to a new traffic-manager \(it restarted\): the connections open before were reset/);
    const dns = await inNs("ws", ["getent", "ahostsv4", "echo.default"]);
    assert.match(dns.stdout, new RegExp(echo.serviceIp.replaceAll(".", "\\.")), "cluster names still resolve");
  } finally {
    held?.kill();
    await held?.exited;
    await forceQuit();
    await manager.stop();
  }
});
