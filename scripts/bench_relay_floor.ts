/**
 * The floor under any two-process design in Deno (not a test): how much a workstation-side and a cluster-side Deno
 * process cost when all they do is copy bytes between TCP sockets. On a lab of its own (`rf-ws` / `rf-cluster`, or
 * the one `--lab-id` or TP_LAB_ID names), in one run, beside the kernel's own route:
 *
 *   kernel      client -> veth route -> echo / HTTP service
 *   relays      client -> relay (Deno, workstation) -> relay (Deno, cluster) -> echo / HTTP service
 *
 * Prints request/response p50/p99 (64 bytes, one connection; scripts/bench_client.ts rr), connect() and the first
 * byte of an HTTP GET on a new connection after 10 and 200 ms idle (bench_client.ts connect: the relays accept at once
 * and dial behind the app's request, as sshuttle does, so their connect() is the kernel's) and, with wrk installed, new
 * HTTP connections per second with 32 and 8 clients (each relayed connection dials a new one at each relay: no
 * multiplexing). tp's figures in scripts/bench compare against these: whatever these take, a design with a process on
 * each side in Deno cannot beat on this machine.
 *
 *   scripts/deno run -A scripts/bench_relay_floor.ts [--lab-id rf]
 *
 * Needs root, iproute2 and the lab's tools. Every process it starts is ended by pid; the lab goes down after.
 */
import { labConfig, labService } from "./lab_config.ts";
import { down, up } from "./lab.ts";
import { exec } from "../tests/lab.ts";
import { selectLab } from "./_lab_fixture.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const cfg = labConfig(selectLab("rf"));
const WS = cfg.namespaces.workstation;
const CL = cfg.namespaces.cluster;
const echo = labService(cfg, "echo");
const ECHO_PORT = echo.ports["tcp-echo"]!.port;
const HTTP_PORT = echo.ports["http"]!.port;
const SUBNET = cfg.subnets.service.find((c) => !c.includes(":"))!;
const CLUSTER_IP = cfg.manager.ip;
/** Idle gaps before a new connection, ms. */
const GAPS = [10, 200];

/** The relay both processes run: accept, dial, copy both ways (one connection per connection). */
const RELAY = `
const [lh, lp, th, tp] = Deno.args;
const l = Deno.listen({ hostname: lh, port: Number(lp) });
console.log("ready");
const pump = async (a, b) => {
  const buf = new Uint8Array(65536);
  try { for (let n = await a.read(buf); n !== null; n = await a.read(buf)) await b.write(buf.subarray(0, n)); }
  catch { /* the other side went away */ }
  try { await b.closeWrite(); } catch { /* closed */ }
};
for await (const c of l) {
  c.setNoDelay(true);
  Deno.connect({ hostname: th, port: Number(tp) }).then((u) => {
    u.setNoDelay(true);
    Promise.all([pump(c, u), pump(u, c)]).finally(() => { try { c.close(); } catch {} try { u.close(); } catch {} });
  }, () => c.close());
}
`;

async function inWs(argv: string[]) {
  return await exec(["ip", "netns", "exec", WS, ...argv], { timeoutMs: 60_000 });
}

async function rr(host: string, port: number): Promise<{ p50Us: number; p99Us: number }> {
  const r = await inWs([
    Deno.execPath(),
    "run",
    "--allow-net",
    `${ROOT}scripts/bench_client.ts`,
    "rr",
    host,
    String(port),
  ]);
  if (r.code !== 0) throw new Error(`rr: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

interface Timing {
  p50Us: number;
}

/** connect() and first byte p50 of a new connection after each idle gap (bench_client.ts connect). */
async function connectAfterIdle(
  host: string,
  port: number,
): Promise<Record<string, { connect: Timing; ttfb: Timing }>> {
  const r = await inWs([
    Deno.execPath(),
    "run",
    "--allow-net",
    `${ROOT}scripts/bench_client.ts`,
    "connect",
    host,
    String(port),
    "--gaps",
    GAPS.join(","),
  ]);
  if (r.code !== 0) throw new Error(`connect: ${r.stderr}`);
  return JSON.parse(r.stdout).gaps;
}

async function wrk(url: string, clients: number): Promise<number | null> {
  const which = await exec(["sh", "-c", "command -v wrk"]);
  if (which.code !== 0) return null;
  const r = await inWs(["wrk", "-t2", `-c${clients}`, "-d3s", "--timeout", "2s", "-H", "Connection: close", url]);
  const m = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
  return m ? Number(m[1]) : null;
}

function relay(ns: string, args: string[]): Deno.ChildProcess {
  return new Deno.Command("ip", {
    args: ["netns", "exec", ns, Deno.execPath(), "eval", RELAY, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
}

async function ready(p: Deno.ChildProcess): Promise<void> {
  const reader = p.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (let i = 0; i < 50 && !text.includes("ready"); i++) {
    const r = await reader.read();
    if (r.done) break;
    text += r.value;
  }
  reader.releaseLock();
  if (!text.includes("ready")) throw new Error("a relay did not start");
}

if (Deno.uid() !== 0) throw new Error("bench_relay_floor needs root (it brings up a lab of network namespaces)");
await up(cfg);
interface Row {
  path: string;
  rr: { p50Us: number; p99Us: number };
  connect: Record<string, { connect: Timing; ttfb: Timing }>;
  conns32: number | null;
  conns8: number | null;
}
const rows: Row[] = [];
/** Every measure of one path, to the echo service at echoHost:echoPort and the HTTP one at httpUrl. */
async function measure(path: string, echoHost: string, echoPort: number, httpHost: string, httpPort: number) {
  const url = `http://${httpHost}:${httpPort}/`;
  rows.push({
    path,
    rr: await rr(echoHost, echoPort),
    connect: await connectAfterIdle(httpHost, httpPort),
    conns32: await wrk(url, 32),
    conns8: await wrk(url, 8),
  });
}
const procs: Deno.ChildProcess[] = [];
try {
  // kernel: a plain route to the service subnet through the veth
  await exec(["ip", "-n", WS, "route", "add", SUBNET, "via", CLUSTER_IP]);
  try {
    await measure("kernel route", echo.serviceIp, ECHO_PORT, echo.serviceIp, HTTP_PORT);
  } finally {
    await exec(["ip", "-n", WS, "route", "del", SUBNET, "via", CLUSTER_IP]);
  }
  // two relays per service: workstation 127.0.0.1:P -> cluster veth address :P -> the service
  for (const port of [ECHO_PORT, HTTP_PORT]) {
    const far = relay(CL, [CLUSTER_IP, String(20000 + port), echo.serviceIp, String(port)]);
    procs.push(far);
    await ready(far);
    const near = relay(WS, ["127.0.0.1", String(20000 + port), CLUSTER_IP, String(20000 + port)]);
    procs.push(near);
    await ready(near);
  }
  await measure("two Deno relays", "127.0.0.1", 20000 + ECHO_PORT, "127.0.0.1", 20000 + HTTP_PORT);
} finally {
  for (const p of procs) {
    try {
      p.kill("SIGKILL");
    } catch { /* gone */ }
    await p.status;
    await p.stdout.cancel().catch(() => {});
  }
  await down(cfg);
}
const columns: [string, (r: Row) => number | null][] = [
  ["rr p50 us", (r) => r.rr.p50Us],
  ["rr p99 us", (r) => r.rr.p99Us],
  ...GAPS.flatMap((g): [string, (r: Row) => number | null][] => [
    [`connect ${g}ms us`, (r) => r.connect[String(g)]?.connect.p50Us ?? null],
    [`1st byte ${g}ms us`, (r) => r.connect[String(g)]?.ttfb.p50Us ?? null],
  ]),
  ["conns/s (32)", (r) => r.conns32],
  ["conns/s (8)", (r) => r.conns8],
];
console.log("path".padEnd(16) + columns.map(([h]) => h.padStart(18)).join(""));
for (const r of rows) {
  const cells = columns.map(([, f]) => f(r)).map((v) => (v === null ? "n/a" : v.toFixed(0)).padStart(18));
  console.log(r.path.padEnd(16) + cells.join(""));
}
