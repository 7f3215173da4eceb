/**
 * The floor under any two-process design in Deno (not a test): how much a workstation-side and a cluster-side Deno
 * process cost when all they do is copy bytes between TCP sockets. On a lab of its own (`rf-ws` / `rf-cluster`, or
 * the one `--lab-id` or TP_LAB_ID names), in one run, beside the kernel's own route:
 *
 *   kernel      client -> veth route -> echo / HTTP service
 *   relays      client -> relay (Deno, workstation) -> relay (Deno, cluster) -> echo / HTTP service
 *
 * Prints request/response p50/p99 (64 bytes, one connection; scripts/bench_client.ts rr) and, with wrk installed,
 * new HTTP connections per second (each relayed connection dials a new one at each relay: no multiplexing). tp's
 * figures in scripts/bench compare against these.
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

async function wrk(url: string): Promise<number | null> {
  const which = await exec(["sh", "-c", "command -v wrk"]);
  if (which.code !== 0) return null;
  const r = await inWs(["wrk", "-t2", "-c32", "-d3s", "--timeout", "2s", "-H", "Connection: close", url]);
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
const rows: [string, { p50Us: number; p99Us: number }, number | null][] = [];
const procs: Deno.ChildProcess[] = [];
try {
  // kernel: a plain route to the service subnet through the veth
  await exec(["ip", "-n", WS, "route", "add", SUBNET, "via", CLUSTER_IP]);
  try {
    rows.push([
      "kernel route",
      await rr(echo.serviceIp, ECHO_PORT),
      await wrk(`http://${echo.serviceIp}:${HTTP_PORT}/`),
    ]);
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
  rows.push([
    "two Deno relays",
    await rr("127.0.0.1", 20000 + ECHO_PORT),
    await wrk(`http://127.0.0.1:${20000 + HTTP_PORT}/`),
  ]);
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
console.log(`${"path".padEnd(20)}${"rr p50 us".padStart(10)}${"rr p99 us".padStart(10)}${"new conns/s".padStart(13)}`);
for (const [name, r, c] of rows) {
  console.log(
    `${name.padEnd(20)}${r.p50Us.toFixed(0).padStart(10)}${r.p99Us.toFixed(0).padStart(10)}${
      (c === null ? "n/a" : c.toFixed(0)).padStart(13)
    }`,
  );
}
