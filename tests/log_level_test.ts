/** The daemon's log: where tp status says, at the level connect --log-level sets and tp loglevel changes. */
import assert from "node:assert/strict";
import { inNs, STATE_DIR, tp, whileConnected } from "./connect_fixture.ts";

const debugLines = async () =>
  (await Deno.readTextFile(`${STATE_DIR}/daemon.log`)).split("\n").filter((l) =>
    / debug tcp .* -> 198\.19\.0\.10:8080$/.test(l)
  );

Deno.test("tp loglevel debug logs each connection to the file tp status names, and info stops it again", async () => {
  await whileConnected(async () => {
    const status = await tp(["status"]);
    assert.match(status.stdout, new RegExp(`^  log: +${STATE_DIR}/daemon\\.log \\(info and above; `, "m"));
    const curl = () => inNs("ws", ["curl", "-sS", "-m", "5", "-o", "/dev/null", "http://198.19.0.10:8080/"]);
    assert.equal((await curl()).code, 0);
    assert.equal((await debugLines()).length, 0, "no connection lines at info");

    const debug = await tp(["loglevel", "debug"]);
    assert.equal(debug.code, 0, debug.stderr);
    assert.equal(debug.stderr.trim(), `tp: the daemon logs debug and above to ${STATE_DIR}/daemon.log from now on`);
    assert.equal((await curl()).code, 0);
    assert.equal((await debugLines()).length, 1);
    assert.match((await tp(["status", "-o", "json"])).stdout, /"level": "debug"/);

    assert.equal((await tp(["loglevel", "info"])).code, 0);
    assert.equal((await curl()).code, 0);
    assert.equal((await debugLines()).length, 1, "no new connection line back at info");
  });
});

Deno.test("tp connect --log-level debug starts the daemon at debug, and tp loglevel without a daemon exits 3", async () => {
  await whileConnected(async () => {
    assert.equal((await inNs("ws", ["curl", "-sS", "-m", "5", "-o", "/dev/null", "http://198.19.0.10:8080/"])).code, 0);
    assert.equal((await debugLines()).length, 1);
  }, { connectArgs: ["--log-level", "debug"] });
  const none = await tp(["loglevel", "debug"]);
  assert.equal(none.code, 3);
  assert.match(none.stderr, /^tp: not connected/);
});
