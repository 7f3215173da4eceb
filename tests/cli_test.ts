/** The tp command line as a user meets it: help, version, and usage errors that name the problem. */
import assert from "node:assert/strict";
import { exec, ROOT } from "./lab.ts";
import { buildCommand, COMMANDS } from "../cli/main.ts";

const tp = (...args: string[]) => exec([`${ROOT}/scripts/tp`, ...args], { timeoutMs: 60_000 });

Deno.test("tp --help lists the commands and exits 0", async () => {
  const r = await tp("--help");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Usage: tp/);
  assert.match(r.stdout, /version/);
});

Deno.test("tp version -o json prints tp's and Deno's versions", async () => {
  const r = await tp("version", "-o", "json");
  assert.equal(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  const denoJson = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  assert.equal(v.version, denoJson.version);
  assert.equal(v.deno, (await Deno.readTextFile(`${ROOT}/scripts/deno_version`)).trim());
  const text = await tp("version");
  assert.equal(text.stdout.trim(), `tp ${v.version} (deno ${v.deno}, ${v.os}/${v.arch})`);
});

Deno.test("an unknown command is rejected by name with exit code 2", async () => {
  const r = await tp("conect");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command 'conect'/);
  assert.match(r.stderr, /tp --help/);
});

Deno.test("an unknown flag is rejected by name with exit code 2", async () => {
  const r = await tp("version", "--colour");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown option '--colour'/);
  const bad = await tp("version", "-o", "yaml");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /'yaml' is invalid.*text, json/s);
});

Deno.test("tp leave --port 0 is a usage error, never a leave of every port of the workload", async () => {
  // A state directory with no daemon: a request that got past the check would say "not connected" (exit 3) instead.
  const stateDir = await Deno.makeTempDir({ prefix: "tp-leave-" });
  try {
    const r = await exec([`${ROOT}/scripts/tp`, "leave", "web", "--port", "0"], {
      timeoutMs: 60_000,
      env: { ...Deno.env.toObject(), TP_STATE_DIR: stateDir },
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--port: "0" is not a port \(1-65535\)/);
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("scripts/tp runs from any directory", async () => {
  const r = await exec(["sh", "-c", `cd / && ${ROOT}/scripts/tp version`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^tp \d+\.\d+\.\d+/);
});

Deno.test("every command in cli/main.ts's table builds, named as its entry, and tp --help lists it", async () => {
  const help = await tp("--help");
  assert.equal(help.code, 0, help.stderr);
  for (const entry of COMMANDS) {
    const cmd = await buildCommand(entry);
    assert.equal(cmd.name(), entry.name);
    assert.match(help.stdout, new RegExp(`^  ${entry.name} +${entry.summary.split(" ")[0]}`, "m"));
  }
});

Deno.test("tp --help, tp version and tp status load no npm package: they run with an empty Deno cache", async () => {
  const empty = await Deno.makeTempDir({ prefix: "tp-empty-deno-dir-" });
  try {
    const run = (...args: string[]) =>
      exec([Deno.execPath(), "run", "--allow-all", "--quiet", "--cached-only", `${ROOT}/cli/main.ts`, ...args], {
        env: { ...Deno.env.toObject(), DENO_DIR: empty, TP_STATE_DIR: `${empty}/state` },
      });
    for (const args of [["--help"], ["version"], ["version", "-o", "json"], ["status"], ["status", "-o", "json"]]) {
      const r = await run(...args);
      assert.equal(r.code, args[0] === "status" ? 3 : 0, `tp ${args.join(" ")}: ${r.stderr}`);
    }
    // The check is real: a command that needs an npm package cannot run from the empty cache.
    const connect = await run("connect", "--help");
    assert.notEqual(connect.code, 0);
    assert.match(connect.stderr, /not found in cache/);
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
});
