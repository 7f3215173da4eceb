/**
 * `tp manager` out of file descriptors: run under `prlimit --nofile=64`, it is sent more connections than it has
 * descriptors for. accept() then fails with EMFILE; the manager must back off and go on serving once descriptors
 * are free again (it used to end its accept loop and exit with every session).
 */
import assert from "node:assert/strict";
import { requireTools } from "./lab.ts";
import { healthz } from "./h2_raw.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** Lines of a child's stderr, as they come. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let i: number;
    while ((i = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, i);
      rest = rest.slice(i + 1);
    }
  }
}

Deno.test("tp manager under prlimit --nofile=64 keeps serving after accept() fails with EMFILE", async () => {
  requireTools("prlimit");
  const child = new Deno.Command("prlimit", {
    args: [
      "--nofile=64:64",
      Deno.execPath(),
      "run",
      "--allow-all",
      "--quiet",
      "--cached-only",
      `${ROOT}cli/main.ts`,
      "manager",
      "--listen",
      "127.0.0.1:0",
      "--pod-cidr",
      "198.18.0.0/16",
      "--service-cidr",
      "198.19.0.0/16",
      "--dns-server",
      "127.0.0.1:53",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const log: string[] = [];
  const held: Deno.Conn[] = [];
  const it = lines(child.stderr);
  const next = async (what: string, ms: number): Promise<string> => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const t = new Promise<never>((
      _,
      r,
    ) => (timer = setTimeout(() => r(new Error(`no ${what}: ${log.join("\n")}`)), ms)));
    try {
      for (;;) {
        const r = await Promise.race([it.next(), t]);
        if (r.done) throw new Error(`the manager exited before ${what}: ${log.join("\n")}`);
        log.push(r.value);
        if (r.value.includes(what)) return r.value;
      }
    } finally {
      clearTimeout(timer);
    }
  };
  try {
    const listening = JSON.parse(await next("manager listening", 60_000));
    const port = Number(String(listening.address).split(":").at(-1));
    // 100 idle connections: more than the 64 descriptors, so accept() runs out.
    for (let i = 0; i < 100; i++) held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    await next("accept failed, retrying", 10_000);
    for (const c of held.splice(0)) c.close();
    // The manager is still there and answers on a new connection once descriptors are free.
    let status: string | undefined;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      try {
        status = await healthz(port);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    assert.equal(status, "200");
  } finally {
    for (const c of held) c.close();
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    // Drain stderr so the child can exit, then wait for it.
    void (async () => {
      for await (const l of it) log.push(l);
    })();
    await child.status;
  }
});
