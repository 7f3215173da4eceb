/** tp's config file through the real command line: defaults used, flags overriding, bad keys refused, view. */
import assert from "node:assert/strict";
import { exec, requireRoot, requireTools, ROOT } from "./lab.ts";

async function withConfig(text: string, f: (run: (...args: string[]) => ReturnType<typeof exec>) => Promise<void>) {
  requireRoot(); // unshare --net
  const dir = await Deno.makeTempDir({ prefix: "tp-config-" });
  try {
    await Deno.writeTextFile(`${dir}/config.yaml`, text);
    // In a network namespace of its own: a connect that got further than it should could change nothing here.
    await f((...args) =>
      exec(["unshare", "--net", `${ROOT}/scripts/tp`, ...args], {
        timeoutMs: 30_000,
        env: { ...Deno.env.toObject(), TP_CONFIG: `${dir}/config.yaml`, TP_STATE_DIR: `${dir}/state`, NO_COLOR: "1" },
      })
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("tp connect takes its manager URL from the config file, and the flag overrides it", async () => {
  requireTools("unshare");
  await withConfig("connect:\n  manager-url: http://127.0.0.1:9\n  token: s3cret\n", async (tp) => {
    const fromFile = await tp("connect", "--foreground");
    assert.equal(fromFile.code, 1);
    assert.match(fromFile.stderr, /cannot reach the traffic-manager at http:\/\/127\.0\.0\.1:9 /);
    const fromFlag = await tp("connect", "--foreground", "--manager-url", "http://127.0.0.1:7");
    assert.match(fromFlag.stderr, /cannot reach the traffic-manager at http:\/\/127\.0\.0\.1:7 /);
    const view = await tp("config", "view");
    assert.equal(view.code, 0, view.stderr);
    assert.match(view.stdout, /^connect:\n {2}manager-url: http:\/\/127\.0\.0\.1:9\n {2}token: \(set\)$/m);
    assert.doesNotMatch(view.stdout + view.stderr, /s3cret/);
  });
});

Deno.test("tp status's output format comes from the config file unless -o says otherwise", async () => {
  requireTools("unshare");
  await withConfig("status:\n  output: json\n", async (tp) => {
    const json = await tp("status");
    assert.equal(json.code, 3, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), { connected: false, stale: false });
    const text = await tp("status", "-o", "text");
    assert.equal(text.stdout.trim(), "tp: not connected");
  });
});

Deno.test("a config file with an unknown key is refused, naming the key and the file", async () => {
  requireTools("unshare");
  await withConfig("connect:\n  manager-urll: http://127.0.0.1:9\n", async (tp) => {
    const r = await tp("connect", "--foreground");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^tp: unknown key connect\.manager-urll in the config file .*config\.yaml: its keys are/);
  });
});
