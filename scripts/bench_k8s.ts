/**
 * Benchmark: tp's port-forward (openManagerStream through the API server test double) against a direct TCP
 * connection to the same echo server, in the same run. The double and the echo run in a child process (this file
 * with --serve), the clients here, so the client and the server sides do not share one event loop.
 *
 *   scripts/deno run -A scripts/bench_k8s.ts [--mb 64] [--rounds 2000] [-o json]
 *
 * Throughput: MB written and echoed back (both directions at once), per second of one direction. Latency: a 64-byte
 * request and its echo, one at a time. Needs openssl (the double's certificates); no root, no lab.
 */
import { Buffer } from "node:buffer";
import net from "node:net";
import type { Duplex } from "node:stream";
import { openManagerStream } from "../k8s/portforward.ts";

const args = Deno.args;
const flag = (name: string, def: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};

if (args.includes("--serve")) {
  const { fixture } = await import("../tests/k8s_fixture.ts");
  const f = await fixture();
  console.log(JSON.stringify({ kubeconfig: f.kubeconfig(), echoPort: f.echo.port }));
  // Serve until the parent closes stdin.
  for await (const _ of Deno.stdin.readable) { /* nothing is sent */ }
  await f.close();
  Deno.exit(0);
}

async function throughput(s: Duplex, bytes: number): Promise<number> {
  const chunk = new Uint8Array(64 * 1024).fill(7);
  let got = 0;
  const t0 = performance.now();
  const done = new Promise<void>((resolve) => {
    s.on("data", (b: Buffer) => {
      got += b.length;
      if (got >= bytes) resolve();
    });
  });
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!s.write(chunk)) await new Promise((r) => s.once("drain", r));
  }
  await done;
  s.removeAllListeners("data");
  return bytes / 1e6 / ((performance.now() - t0) / 1000);
}

async function latency(s: Duplex, rounds: number): Promise<{ p50: number; p99: number }> {
  const msg = Buffer.alloc(64, 1);
  const times: number[] = [];
  let waiting: (() => void) | undefined;
  let got = 0;
  s.on("data", (b: Buffer) => {
    got += b.length;
    if (got >= msg.length) {
      got -= msg.length;
      waiting?.();
    }
  });
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    await new Promise<void>((r) => {
      waiting = r;
      s.write(msg);
    });
    times.push((performance.now() - t0) * 1000);
  }
  s.removeAllListeners("data");
  times.sort((a, b) => a - b);
  return { p50: times[Math.floor(rounds / 2)]!, p99: times[Math.floor(rounds * 0.99)]! };
}

const mb = flag("--mb", 64);
const rounds = flag("--rounds", 2000);
const child = new Deno.Command(Deno.execPath(), {
  args: ["run", "--allow-all", new URL(import.meta.url).pathname, "--serve"],
  stdin: "piped",
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
let first = "";
for (let i = 0; i < 100 && !first.includes("\n"); i++) {
  const r = await reader.read();
  if (r.done) break;
  first += r.value;
}
const { kubeconfig, echoPort } = JSON.parse(first) as { kubeconfig: string; echoPort: number };

const results: Record<string, { throughputMBps: number; latencyUs: { p50: number; p99: number } }> = {};
for (const kind of ["direct", "port-forward"] as const) {
  const s: Duplex = kind === "direct"
    ? await new Promise<net.Socket>((resolve, reject) => {
      const c = net.connect({ host: "127.0.0.1", port: echoPort }, () => resolve(c));
      c.setNoDelay(true);
      c.once("error", reject);
    })
    : await openManagerStream({ kubeconfig, keepaliveMs: 0 });
  await throughput(s, 4 * 1024 * 1024); // warm-up
  const tp = await throughput(s, mb * 1024 * 1024);
  const lat = await latency(s, rounds);
  results[kind] = {
    throughputMBps: Math.round(tp * 10) / 10,
    latencyUs: { p50: Math.round(lat.p50), p99: Math.round(lat.p99) },
  };
  s.destroy();
  await new Promise((r) => setTimeout(r, 50));
}
reader.cancel().catch(() => {});
await child.stdin.close();
await child.status;

const d = results["direct"]!;
const p = results["port-forward"]!;
const summary = {
  mb,
  rounds,
  ...results,
  portForwardThroughputRatio: Math.round((p.throughputMBps / d.throughputMBps) * 100) / 100,
};
if (args.includes("json")) console.log(JSON.stringify(summary, null, 2));
else {
  console.log(`payload ${mb} MB echoed; ${rounds} request/response rounds of 64 bytes`);
  for (const [k, v] of Object.entries(results)) {
    console.log(
      `${k.padEnd(13)} ${
        String(v.throughputMBps).padStart(7)
      } MB/s   p50 ${v.latencyUs.p50} us   p99 ${v.latencyUs.p99} us`,
    );
  }
  console.log(`port-forward throughput is ${Math.round(summary.portForwardThroughputRatio * 100)} % of direct`);
}
