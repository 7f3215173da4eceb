/**
 * What the root daemon shows and to whom: no manager token in anything tp prints, its control socket's replies or its
 * log; the control socket usable only by the user who connected and root. Another local user is a uid with no
 * account (setpriv) in the same primary group as the user who connected (a shared "users" group), who is another,
 * named to the daemon as sudo would (SUDO_UID, SUDO_GID).
 */
import assert from "node:assert/strict";
import { forceQuit, MANAGER_URL, startLabManager, STATE_DIR, tp } from "./connect_fixture.ts";
import { tpAsNobody } from "./as_user.ts";
import { controlRequest } from "../cli/daemon/control.ts";

const TOKEN = "control-access-test-token-5c1e";
const CONNECTED_UID = 4242;
const OTHER_UID = 4343;

Deno.test("no token in tp connect's or tp status's output, text or JSON, in the control socket's replies or the log", async () => {
  const manager = await startLabManager(["--token", TOKEN]);
  const dir = await Deno.makeTempDir({ prefix: "tp-token-" });
  try {
    const up = await tp(["connect", "--manager-url", MANAGER_URL, "-o", "json"], { env: { TP_TOKEN: TOKEN } });
    assert.equal(up.code, 0, up.stderr);
    assert.equal(JSON.parse(up.stdout).settings.token, "(set)");
    assert.match(up.stderr, /warning: sending the token to 198\.18\.0\.2 over plain http:\/\//);
    await Deno.writeTextFile(`${dir}/token`, `${TOKEN}\n`);
    const again = await tp(["connect", "--manager-url", MANAGER_URL, "--token-file", `${dir}/token`, "-o", "json"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /already connected/);
    const other = await tp(["connect", "--manager-url", MANAGER_URL, "--token", "another-token"]);
    assert.notEqual(other.code, 0);
    assert.match(other.stderr, /already connected with other settings \(--token differs\)/);
    const outputs = [
      up,
      again,
      other,
      await tp(["status"]),
      await tp(["status", "-o", "json"]),
      await tp(["loglevel", "debug"]),
    ].map((r) => r.stdout + r.stderr);
    const replies = [
      await controlRequest(`${STATE_DIR}/daemon.sock`, { op: "status" }),
      await controlRequest(`${STATE_DIR}/daemon.sock`, { op: "status", compare: { token: "x" } }),
    ].map((r) => JSON.stringify(r));
    const files = [
      await Deno.readTextFile(`${STATE_DIR}/daemon.log`),
      await Deno.readTextFile(`${STATE_DIR}/daemon.json`),
    ];
    for (const text of [...outputs, ...replies, ...files]) assert.ok(!text.includes(TOKEN), `the token in:\n${text}`);
  } finally {
    await forceQuit();
    await manager.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("another local user is refused by the control socket; the user who connected and root are served", async () => {
  const manager = await startLabManager();
  const scratch = await Deno.makeTempDir({ prefix: "tp-control-" });
  await Deno.chmod(scratch, 0o755);
  try {
    const up = await tp(["connect", "--manager-url", MANAGER_URL], {
      env: { SUDO_UID: String(CONNECTED_UID), SUDO_GID: String(CONNECTED_UID) },
    });
    assert.equal(up.code, 0, up.stderr);
    const sock = await Deno.lstat(`${STATE_DIR}/daemon.sock`);
    assert.equal(sock.mode! & 0o777, 0o600);
    assert.equal(sock.uid, CONNECTED_UID);
    const as = (uid: number, args: string[]) =>
      tpAsNobody(args, { stateDir: STATE_DIR, scratch, uid, gid: CONNECTED_UID });
    for (const args of [["status"], ["quit"], ["loglevel", "debug"], ["leave", "api"]]) {
      const r = await as(OTHER_UID, args);
      assert.equal(r.code, 1, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, new RegExp(`cannot use ${STATE_DIR}/daemon.sock as uid ${OTHER_UID}`));
    }
    const mine = await as(CONNECTED_UID, ["status"]);
    assert.equal(mine.code, 0, mine.stderr);
    assert.match(mine.stdout, /^tp: connected/);
    const root = await tp(["status"]);
    assert.equal(root.code, 0, root.stderr);
    // No other user saw the socket with looser permissions: nothing else is left in the state directory.
    const names = [];
    for await (const e of Deno.readDir(STATE_DIR)) names.push(e.name);
    assert.deepEqual(names.filter((n) => n.startsWith(".control-")), []);
    const quit = await as(CONNECTED_UID, ["quit"]);
    assert.equal(quit.code, 0, quit.stderr);
  } finally {
    await forceQuit();
    await manager.stop();
    await Deno.remove(scratch, { recursive: true });
  }
});
