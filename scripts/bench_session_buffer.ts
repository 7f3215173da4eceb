/**
 * What one abusive workstation makes the traffic-manager hold: a session opens STREAMS tunnels to a source that
 * writes as fast as it can, and neither reads them nor (resumable ones) acknowledges them. Meanwhile a second
 * session downloads 64 MiB from the same source (at most 15 s). With `noack`, the abusive session reads (and drops)
 * what comes, and only never acknowledges. Prints one JSON line: the manager's RSS and its held bytes
 * (/metrics) after SECONDS, and the second session's download rate.
 *
 * The manager runs as `tp manager` in a process of its own (its RSS is its alone); the source and both clients run
 * here.
 *
 *   scripts/deno run -A scripts/bench_session_buffer.ts [STREAMS=64] [SECONDS=8] [resumable|noack|plain] [-- flags]
 */
import { connect, type Tunnel } from "../proto/mod.ts";

const [streamsArg, secondsArg, kindArg, ...rest] = Deno.args;
const STREAMS = Number(streamsArg ?? 64);
const SECONDS = Number(secondsArg ?? 8);
/** resumable: neither reads nor acknowledges; noack: resumable, reads (and drops) but never acknowledges; plain. */
const kind = kindArg ?? "resumable";
const resumable = kind === "resumable" || kind === "noack";
const managerFlags = rest[0] === "--" ? rest.slice(1) : rest;

// The source, in a process of its own: every connection, once it received a byte, gets bytes as fast as the socket
// takes them (the tunnels all open before any sends: a client that does not read fills its connection's window).
const sourceCode = `
const block = new Uint8Array(256 * 1024).map((_, i) => i & 0xff);
const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(l.addr.port);
for await (const c of l) (async () => { try { await c.read(new Uint8Array(1)); for (;;) await c.write(block); } catch { c.close(); } })();
`;
const sourceProc = new Deno.Command(Deno.execPath(), { args: ["eval", sourceCode], stdout: "piped" }).spawn();
const sourceLine = sourceProc.stdout.pipeThrough(new TextDecoderStream()).getReader();
const sourcePort = Number((await sourceLine.read()).value!.trim());
const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const port = (probe.addr as Deno.NetAddr).port;
probe.close();
const root = new URL("..", import.meta.url).pathname;
const manager = new Deno.Command(`${root}scripts/tp`, {
  args: [
    "manager",
    "--listen",
    `127.0.0.1:${port}`,
    "--pod-cidr",
    "127.0.0.0/8",
    "--service-cidr",
    "198.18.0.0/16",
    "--dns-server",
    "127.0.0.1",
    "--log-level",
    "warn",
    ...managerFlags,
  ],
  stdout: "null",
  stderr: "inherit",
}).spawn();
const url = `http://127.0.0.1:${port}`;
for (let i = 0;; i++) {
  try {
    (await fetch(`${url}/healthz`)).body?.cancel();
    break;
  } catch {
    if (i > 200) throw new Error("the manager did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function metrics(): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const m =
      /^(tp_manager_(?:stream_buffered_bytes|session_buffered_bytes(?:\{stat="max"\})?|session_buffer_pauses_total))\s+(\S+)$/
        .exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}
async function rssMiB(): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${manager.pid}/status`);
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
  return Math.round(kb / 1024);
}

const rssBefore = await rssMiB();
const say = (m: string) => console.error(`[bench] ${m}`);
say(`manager up, rss ${rssBefore} MiB`);
const abuser = await connect(url, undefined);
say("connected");
const tunnels: Tunnel[] = [];
for (let i = 0; i < STREAMS; i++) {
  const t = await abuser.openTunnel({
    protocol: "tcp",
    source: { ip: "198.18.9.1", port: 20000 + i },
    destination: { ip: "127.0.0.1", port: sourcePort },
  }, { resumable });
  if (i % 16 === 0) say(`tunnel ${i}`);
  t.sendAck = () => {}; // never acknowledges; and nobody calls read()
  tunnels.push(t);
}
for (const t of tunnels) t.write(new Uint8Array([1]));
if (kind === "noack") {
  for (const t of tunnels) {
    (async () => {
      while (await t.read());
    })().catch(() => {});
  }
}
say(`${STREAMS} streams open`);
let peakRss = 0;
for (let i = 0; i < SECONDS; i++) {
  await new Promise((r) => setTimeout(r, 1000));
  peakRss = Math.max(peakRss, await rssMiB());
}
const held = await metrics();

say(`held ${JSON.stringify(held)}`);
// Another session downloads 64 MiB meanwhile.
const other = await connect(url, undefined);
const t = await other.openTunnel({
  protocol: "tcp",
  source: { ip: "198.18.9.2", port: 30000 },
  destination: { ip: "127.0.0.1", port: sourcePort },
});
t.write(new Uint8Array([1]));
const t0 = performance.now();
let got = 0;
const stopAt = t0 + 15_000; // at most 15 s: a stalled stream shows as a low rate
while (got < 64 << 20 && performance.now() < stopAt) {
  const c = await Promise.race([t.read(), new Promise<null>((r) => setTimeout(() => r(null), 1_000))]);
  if (c) got += c.length;
}
const otherMiB = Math.round(got / (1 << 20));
const otherMiBps = Math.round((got / (1 << 20)) / ((performance.now() - t0) / 1000));
t.reset("done");
peakRss = Math.max(peakRss, await rssMiB());

console.log(JSON.stringify({
  streams: STREAMS,
  kind,
  managerFlags,
  rssBeforeMiB: rssBefore,
  peakRssMiB: peakRss,
  ...held,
  otherSessionMiB: otherMiB,
  otherSessionMiBps: otherMiBps,
}));
for (const x of tunnels) x.reset("done");
await abuser.depart().catch(() => {});
await other.depart().catch(() => {});
manager.kill("SIGTERM");
await manager.status;
sourceProc.kill("SIGTERM");
await sourceProc.status;
Deno.exit(0);
