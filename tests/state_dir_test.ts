/**
 * TP_STATE_DIR passes through sudo, so a user chooses where the root daemon writes. Root refuses a state directory
 * another user controls, and in its own writes through no symlink: an attacker's planted symlinks change nothing.
 */
import assert from "node:assert/strict";
import { forceQuit, MANAGER_URL, startLabManager, tp } from "./connect_fixture.ts";
import { ensureLab } from "./lab.ts";

const USER = 4242;

/** Files an attacker wants root to write, with what they hold. */
async function victims(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = { [`${dir}/victim-log`]: "log\n", [`${dir}/victim-state`]: "state\n" };
  for (const [path, text] of Object.entries(files)) await Deno.writeTextFile(path, text);
  return files;
}

async function assertUnchanged(files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) assert.equal(await Deno.readTextFile(path), text, path);
}

Deno.test("root refuses a state directory another user owns, and writes nothing through the symlinks planted in it", async () => {
  await ensureLab();
  const scratch = await Deno.makeTempDir({ prefix: "tp-state-dir-" });
  try {
    const files = await victims(scratch);
    const dir = `${scratch}/theirs`;
    await Deno.mkdir(dir);
    await Deno.symlink(`${scratch}/victim-log`, `${dir}/daemon.log`);
    await Deno.symlink(`${scratch}/victim-state`, `${dir}/daemon.json`);
    await Deno.writeTextFile(
      `${dir}/resolv.conf.json`,
      JSON.stringify({ path: `${scratch}/victim-state`, pid: 999999, writtenSha256: "", at: "" }),
    );
    await Deno.writeTextFile(`${dir}/resolv.conf.orig`, "owned\n");
    await new Deno.Command("chown", { args: ["-R", "-h", `${USER}:${USER}`, dir] }).output();
    for (const args of [["connect", "--manager-url", MANAGER_URL], ["quit"]]) {
      const r = await tp(args, { env: { TP_STATE_DIR: dir } });
      assert.equal(r.code, 1, `${args[0]}: ${r.stderr}`);
      assert.equal(
        r.stderr.trim(),
        `tp: refusing the state directory ${dir} (TP_STATE_DIR): it belongs to uid ${USER}, and tp writes there as ` +
          `root; leave TP_STATE_DIR unset (/run/tp), or name a directory that only root may write`,
      );
    }
    // Under a directory that user controls, root's own directory is refused too: they could swap it.
    await Deno.mkdir(`${dir}/sub`);
    const sub = await tp(["quit"], { env: { TP_STATE_DIR: `${dir}/sub` } });
    assert.equal(sub.code, 1);
    assert.match(sub.stderr, new RegExp(`its parent ${dir} belongs to uid ${USER}`));
    await assertUnchanged(files);
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
});

Deno.test("in root's own state directory, symlinks left there are not followed by tp connect or tp quit", async () => {
  const manager = await startLabManager();
  const scratch = await Deno.makeTempDir({ prefix: "tp-state-dir-" });
  const dir = `${scratch}/state`;
  try {
    const files = await victims(scratch);
    await Deno.mkdir(dir, { mode: 0o755 });
    await Deno.symlink(`${scratch}/victim-log`, `${dir}/daemon.log`);
    await Deno.symlink(`${scratch}/victim-state`, `${dir}/daemon.json`);
    const up = await tp(["connect", "--manager-url", MANAGER_URL], { env: { TP_STATE_DIR: dir } });
    assert.equal(up.code, 0, up.stderr);
    const quit = await tp(["quit"], { env: { TP_STATE_DIR: dir } });
    assert.equal(quit.code, 0, quit.stderr);
    await assertUnchanged(files);
    const log = await Deno.lstat(`${dir}/daemon.log`);
    assert.ok(log.isFile, "the log is a file of its own");
    assert.match(await Deno.readTextFile(`${dir}/daemon.log`), /connected: tp\d+/);
  } finally {
    await tp(["quit"], { env: { TP_STATE_DIR: dir } });
    await forceQuit();
    await manager.stop();
    await Deno.remove(scratch, { recursive: true });
  }
});
