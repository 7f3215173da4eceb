/** `tp gather-logs` on a connected workstation: the archive holds what a bug report needs and no token. */
import assert from "node:assert/strict";
import { exec, forceQuit, MANAGER_URL, startLabManager, STATE_DIR, tp } from "./connect_fixture.ts";
import { requireTools } from "./lab.ts";

const TOKEN = "gather-logs-test-token-7f3a";

Deno.test("tp gather-logs writes an archive of versions, status, daemon log and metrics, with no token in it", async () => {
  requireTools("tar");
  const manager = await startLabManager(["--token", TOKEN]);
  const dir = await Deno.makeTempDir({ prefix: "tp-gather-logs-" });
  try {
    const up = await tp(["connect", "--manager-url", MANAGER_URL, "--token", TOKEN]);
    assert.equal(up.code, 0, up.stderr);
    const r = await tp(["gather-logs", "-o", `${dir}/logs.tar.gz`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await Deno.stat(`${dir}/logs.tar.gz`)).mode! & 0o777, 0o600);
    const list = await exec(["tar", "tzf", `${dir}/logs.tar.gz`]);
    assert.deepEqual(list.stdout.trim().split("\n").sort(), [
      "README.txt",
      "daemon.log",
      "manager-metrics.txt",
      "status.json",
      "version.json",
    ]);
    const all = await exec(["tar", "xzOf", `${dir}/logs.tar.gz`]);
    assert.equal(all.code, 0, all.stderr);
    assert.ok(!all.stdout.includes(TOKEN), "no file in the archive holds the token");
    const status = JSON.parse((await exec(["tar", "xzOf", `${dir}/logs.tar.gz`, "status.json"])).stdout);
    assert.equal(status.connected, true);
    assert.equal(status.settings.token, "(set)");
    assert.match(all.stdout, /tp_manager_|# TYPE/, "the manager's metrics");
    assert.ok((await Deno.readTextFile(`${STATE_DIR}/daemon.log`)).length > 0);
    // tp status -o json does not print it either.
    const json = await tp(["status", "-o", "json"]);
    assert.ok(!json.stdout.includes(TOKEN));
  } finally {
    await forceQuit();
    await manager.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
