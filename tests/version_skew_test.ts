/**
 * tp upgraded while connected: the commands that talk to the running daemon say it is another version, and how to
 * run this one. The daemon here is a test double ("a daemon of another version"): a control socket that answers as
 * tp's daemon does (one JSON line each way) but reports version 0.0.9, since this checkout can only start its own.
 */
import assert from "node:assert/strict";
import { VERSION } from "../base/version.ts";

const TP = new URL("../scripts/tp", import.meta.url).pathname;
const OLD = "0.0.9";
const NOTE =
  `the running daemon is tp ${OLD}, this is tp ${VERSION}: run tp quit, then tp connect, to use this version`;

/** Serves `dir`/daemon.sock as a daemon of version OLD until the returned function is called. */
function olderDaemon(dir: string): { requests: string[]; stop: () => Promise<void> } {
  const listener = Deno.listen({ transport: "unix", path: `${dir}/daemon.sock` });
  const requests: string[] = [];
  const settings = { managerUrl: "http://198.18.0.9:8081", namespace: "default" };
  const answers: Record<string, unknown> = {
    status: {
      pid: 4242,
      version: OLD,
      startedAt: new Date().toISOString(),
      settings,
      differs: [],
      namespace: "default",
    },
    list: { agents: [], intercepts: [] },
    leave: { removed: 0 },
  };
  const served = (async () => {
    for await (const conn of listener) {
      const buf = new Uint8Array(64 * 1024);
      let text = "";
      for (let i = 0; i < 100 && !text.includes("\n"); i++) {
        const n = await conn.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      const op = String(JSON.parse(text).op);
      requests.push(op);
      const reply = op in answers ? { ok: true, result: answers[op] } : { ok: false, error: `no ${op} here` };
      await conn.write(new TextEncoder().encode(JSON.stringify(reply) + "\n"));
      conn.close();
    }
  })();
  return {
    requests,
    stop: async () => {
      listener.close();
      await served.catch(() => {});
    },
  };
}

async function tp(dir: string, args: string[]) {
  const out = await new Deno.Command(TP, {
    args,
    env: { TP_STATE_DIR: dir, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("a daemon of another version: tp status, list, leave and connect name both versions and the fix", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tp-skew-" });
  const daemon = olderDaemon(dir);
  try {
    const status = await tp(dir, ["status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /tp: connected \(pid 4242/);
    assert.ok(status.stdout.includes(`  note:        ${NOTE}\n`), status.stdout);

    const list = await tp(dir, ["list"]);
    assert.equal(list.code, 0, list.stderr);
    assert.ok(list.stderr.includes(`tp: warning: ${NOTE}\n`), list.stderr);
    assert.match(list.stdout, /No workload in this namespace has tp's traffic-agent/);

    const leave = await tp(dir, ["leave", "web"]);
    assert.equal(leave.code, 1);
    assert.ok(leave.stderr.includes(`tp: warning: ${NOTE}\n`), leave.stderr);
    assert.match(leave.stderr, /tp: web is not intercepted from this machine/);

    const intercept = await tp(dir, ["intercept", "web", "--port", "18080", "--mount", "false"]);
    assert.notEqual(intercept.code, 0);
    assert.ok(intercept.stderr.includes(`tp: warning: ${NOTE}\n`), intercept.stderr);

    const connect = await tp(dir, ["connect", "--manager-url", "http://198.18.0.9:8081"]);
    assert.equal(connect.code, 0, connect.stderr);
    assert.match(connect.stderr, /tp: already connected to /);
    assert.ok(connect.stderr.includes(`tp: warning: ${NOTE}\n`), connect.stderr);

    // JSON for scripts stays as it was: the version is in it, the note is not.
    const json = await tp(dir, ["status", "-o", "json"]);
    assert.equal(JSON.parse(json.stdout).version, OLD);
    assert.ok(!json.stdout.includes("run tp quit"));
  } finally {
    await daemon.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a daemon of this version: no note", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tp-skew-" });
  const listener = Deno.listen({ transport: "unix", path: `${dir}/daemon.sock` });
  const served = (async () => {
    for await (const conn of listener) {
      const buf = new Uint8Array(4096);
      await conn.read(buf);
      const result = { pid: 4243, version: VERSION, startedAt: new Date().toISOString(), settings: {} };
      await conn.write(new TextEncoder().encode(JSON.stringify({ ok: true, result }) + "\n"));
      conn.close();
    }
  })();
  try {
    const status = await tp(dir, ["status"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /tp: connected \(pid 4243/);
    assert.ok(!status.stdout.includes("note:"), status.stdout);
  } finally {
    listener.close();
    await served.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});
