/**
 * A manager open to anyone says so: `tp manager` without --token on a non-loopback address warns at start, naming
 * the fix; on loopback (where tp install puts it: port-forwards arrive there) or with a token it does not. Session ids
 * are secrets: the manager's log carries a tag in their place.
 */
import assert from "node:assert/strict";
import { ROOT } from "./lab.ts";
import { connect } from "../proto/mod.ts";

/** Runs tp manager on an ephemeral port until it logs that it listens; returns its log lines and a stop function. */
async function startTpManager(args: string[]) {
  const child = new Deno.Command(`${ROOT}/scripts/tp`, {
    args: ["manager", "--pod-cidr", "198.19.128.0/20", "--dns-server", "127.0.0.1", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let port = 0;
  const t0 = Date.now();
  while (!port && Date.now() - t0 < 30_000) {
    const r = await reader.read();
    if (r.done) break;
    buf += r.value;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      const m = /"msg":"manager listening".*"address":"[^"]*:(\d+)"/.exec(line);
      if (m) port = Number(m[1]);
    }
  }
  lines.push(...buf.split("\n").filter(Boolean));
  const rest = (async () => {
    for (;;) {
      const r = await reader.read();
      if (r.done) return;
      lines.push(...r.value.split("\n").filter(Boolean));
    }
  })();
  return {
    port,
    lines,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await rest;
      await child.stdout.cancel();
    },
  };
}

Deno.test("tp manager without a token on a non-loopback address warns that it is open, and names the fix", async () => {
  const m = await startTpManager(["--listen", "0.0.0.0:0"]);
  await m.stop();
  const warn = m.lines.find((l) => l.includes("client port is open"));
  assert.ok(warn, m.lines.join("\n"));
  assert.match(warn, /--token/);
});

Deno.test("tp manager on loopback, or with a token, does not warn; its log holds no session id", async () => {
  for (const args of [["--listen", "127.0.0.1:0"], ["--listen", "0.0.0.0:0", "--token", "s3cret-token"]]) {
    const m = await startTpManager(args);
    try {
      assert.ok(m.port > 0, m.lines.join("\n"));
      assert.equal(m.lines.filter((l) => l.includes("client port is open")).length, 0, m.lines.join("\n"));
      const s = await connect(`http://127.0.0.1:${m.port}`, args.includes("--token") ? "s3cret-token" : undefined);
      const id = s.id;
      await s.depart();
      await m.stop();
      const all = m.lines.join("\n");
      assert.match(all, /session arrived/);
      assert.ok(!all.includes(id), "the session id is in the manager's log");
      assert.ok(!all.includes("s3cret-token"), "the token is in the manager's log");
    } finally {
      await m.stop().catch(() => {});
    }
  }
});

Deno.test('an empty token is no token: the client sends no authorization ("Bearer " is malformed HTTP/2)', async () => {
  const { startManager } = await import("./manager_fixture.ts");
  const m = await startManager();
  try {
    const s = await connect(m.url, "");
    await s.depart();
  } finally {
    await m.close();
  }
});
