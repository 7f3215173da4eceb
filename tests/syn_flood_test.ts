/**
 * A SYN flood from the workstation at a cluster address, through `tp connect` on the lab: hping3 (raw sockets, so
 * the workstation's kernel answers tp's SYN-ACKs and RSTs itself) sends SYNs to the lab's silent address, whose dials
 * time out after 5 s, so every SYN tp let through would hold a tunnel stream that long. tp bounds the connections in
 * progress (`net/router/_in_progress.ts`) and answers the excess with RST: curl to a service keeps working, promptly,
 * and `tp status` counts what was refused.
 */
import assert from "node:assert/strict";
import { labService } from "./lab.ts";
import { forceQuit, inNs, LAB, MANAGER_URL, spawnInNs, startLabManager, tp } from "./connect_fixture.ts";

const echo = labService(LAB, "echo");
const HTTP = echo.ports["http"]!.port;

// deno-lint-ignore no-explicit-any
async function status(): Promise<any> {
  const r = await tp(["status", "-o", "json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

Deno.test("curl works and completes promptly during a SYN flood at a cluster address, and tp status counts the refused SYNs", async () => {
  const manager = await startLabManager();
  let flood: ReturnType<typeof spawnInNs> | undefined;
  try {
    const c = await tp(["connect", "--manager-url", MANAGER_URL]);
    assert.equal(c.code, 0, c.stderr);
    // 10,000 SYNs a second for at most 20 s (timeout and -c bound it; the test ends it by pid long before).
    flood = spawnInNs(LAB.namespaces.workstation, [
      "timeout",
      "20",
      "hping3",
      "-S",
      "-p",
      "80",
      "-i",
      "u100",
      "-c",
      "200000",
      LAB.silentIp,
    ]);
    // Wait (bounded) until the flood is past the bound: tp is refusing SYNs.
    let refused = 0;
    for (let i = 0; i < 100 && refused < 2000; i++) {
      refused = (await status()).router.drops.tcpInProgressLimit ?? 0;
      if (refused < 2000) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(refused >= 2000, `the flood was not refused: ${refused} SYNs; hping3: ${flood.log()}`);
    for (let i = 0; i < 5; i++) {
      const r = await inNs("ws", [
        "curl",
        "-sS",
        "-m",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        `http://${echo.serviceIp}:${HTTP}/during-flood`,
      ]);
      assert.equal(r.stdout, "200", `curl ${i} during the flood: ${r.stderr}`);
      assert.ok(r.ms < 2000, `curl ${i} took ${Math.round(r.ms)} ms during the flood`);
    }
    const s = await status();
    assert.ok(!flood.exited(), "the flood lasted through the requests");
    assert.ok(s.router.tcpInProgress <= 1024, `${s.router.tcpInProgress} connections in progress`);
    assert.ok(s.router.drops.tcpInProgressLimit > refused, "the flood went on being refused");
    assert.ok(s.connections.tcpOpened >= 5);
    const text = await tp(["status"]);
    assert.match(text.stdout, /drops: .*tcpInProgressLimit \d+/);
    await flood.stop();
    flood = undefined;
    const after = await inNs("ws", [
      "curl",
      "-sS",
      "-m",
      "10",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `http://${echo.serviceIp}:${HTTP}/`,
    ]);
    assert.equal(after.stdout, "200", after.stderr);
  } finally {
    await flood?.stop();
    await forceQuit();
    await manager.stop();
  }
});
