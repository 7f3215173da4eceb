/**
 * `scripts/bench [--profile] [--paths kernel,sshuttle,tp] [--lab-id tpb]`: the whole path through tp measured
 * beside the kernel's own route to the same services (the physical limit) and beside sshuttle, in one run, on a lab
 * of its own (`tpb-ws` / `tpb-cluster`, state in /run/tp-bench; another `--lab-id` gets /run/tp-bench-ID), printed
 * as a table of ratios and written to `.bench/bench-<time>.json` (and `.bench/latest.json`).
 *
 * The same clients, in the lab's workstation namespace, reach the same services in its cluster namespace by three
 * paths, one after the other:
 * - kernel: a plain route to the cluster's subnets via the veth (removed after);
 * - sshuttle: sshd in the cluster namespace (a throwaway host key and client key in a temp dir), sshuttle in the
 *   workstation namespace for the cluster's subnets (its NAT rules live in the namespace's own nftables/iptables);
 * - tp: `tp manager` in the cluster namespace, `tp connect --manager-url` in the workstation namespace.
 *
 * Measures: iperf3 upload and download (1 and 4 streams), UDP (iperf3 -u, offered 200, 500 and 1000 Mbit/s and
 * unlimited), new HTTP connections per second (wrk, `Connection: close`, 32 and 8 connections), TCP request/response
 * p50/p99 on one connection (64 bytes with the TCP echo), back to back and after idle gaps of 1, 10, 100 and 500 ms,
 * connect() and time to the first byte of a new connection after 10 ms, 200 ms and 1 s of idle, DNS queries per
 * second (dnsperf, one cached name: tp's DNS, and the cluster's DNS over the kernel's route), the idle CPU of the
 * path's own processes, time from start to the first successful request, memory per idle connection, and how many
 * of 1000 idle connections a path holds at once. `--only a,b` runs only the named steps (tcp, udp, wrk, rr, idle,
 * connect, dns, idleCpu, memory, capacity).
 * For tp it also records the daemon's and the manager's CPU time per measure and the daemon's counters; with
 * `--profile` it runs both under the V8 inspector and records CPU profiles (scripts/bench_profile.ts) during tp's
 * single-stream runs, its HTTP run and its request/response run.
 *
 * Needs root and: iproute2, dnsmasq-base, iperf3, wrk, dnsperf, sshuttle, openssh-server, openssh-client, nftables
 * or iptables. Every process it starts is ended by pid, and the lab goes down, even on failure. Bounded: about 5
 * minutes.
 */
import { type LabConfig, labConfig, labService } from "./lab_config.ts";
import { down, up } from "./lab.ts";
import { controlRequest } from "../cli/daemon/control.ts";
import { exec, type ExecResult } from "../tests/lab.ts";
import { contextSwitches, cpuSeconds, processTree, rssKiB } from "./_proc.ts";
import {
  argValue,
  must,
  printTargets,
  round,
  runBench,
  selectLab,
  type Teardown,
  writeReport,
} from "./_lab_fixture.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const TP = `${ROOT}/scripts/tp`;
const DENO = Deno.execPath();
const CLIENT = `${ROOT}/scripts/bench_client.ts`;
/** scripts/bench_client.ts MODE ARGS..., as a command line (run in the workstation namespace). */
const client = (...args: string[]) => [DENO, "run", "--allow-net", "--allow-read", CLIENT, ...args];
const IPERF_SECONDS = 3;
const WRK_CONNECTIONS = 32;
/** The few clients a person's tools open at once (a browser, a test suite): where waking up costs most. */
const WRK_FEW_CONNECTIONS = 8;
/** Idle gaps (ms) before a request on one connection, and before a new connection. */
const IDLE_GAPS = [0, 1, 10, 100, 500];
const CONNECT_GAPS = [10, 200, 1000];
/** UDP rates offered (iperf3 -b; 0 is unlimited). */
const UDP_RATES = ["200M", "500M", "1000M", "0"];
/** How long the idle CPU of a path's processes is measured, with nothing flowing. */
const IDLE_CPU_SECONDS = 10;
const DNSPERF_SECONDS = 3;
/** The name dnsperf asks for: a cluster name tp's DNS answers from its cache after the first query. */
const DNS_NAME = "echo.default.svc.cluster.local";
/** Idle connections for the memory figure: the issue's thousand, all on one HTTP/2 connection to the manager. */
const HELD_CONNECTIONS = 1000;
const CAPACITY_CONNECTIONS = 1000;
/**
 * UDP goes to an iperf3 server of the bench's own, bound to the iperf service address: the lab's iperf3 (and its
 * UDP echo) listen on the wildcard address, so over the kernel's route their UDP answers leave from the veth
 * address (198.18.0.2) and a connected client drops them. Bound to 198.19.0.11, the answers come from it.
 */
const UDP_IPERF_PORT = 5202;

type PathName = "kernel" | "sshuttle" | "tp";
const ALL_PATHS: PathName[] = ["kernel", "sshuttle", "tp"];

// ---------------------------------------------------------------- arguments

const profile = Deno.args.includes("--profile");
const STEPS = ["tcp", "udp", "wrk", "rr", "idle", "connect", "dns", "idleCpu", "memory", "capacity"];
const only = argValue("only")?.split(",");
for (const o of only ?? []) if (!STEPS.includes(o)) throw new TypeError(`--only takes ${STEPS.join(", ")}; got "${o}"`);
const wanted = (step: string) => !only || only.includes(step);
const paths = (argValue("paths") ?? ALL_PATHS.join(",")).split(",").map((p) => {
  if (!ALL_PATHS.includes(p as PathName)) throw new TypeError(`--paths takes kernel, sshuttle, tp; got "${p}"`);
  return p as PathName;
});
const cfg: LabConfig = labConfig(selectLab("tpb"));
/** The daemon's state dir: one per lab id, so two benchmarks on two labs never share a daemon. */
const STATE_DIR = cfg.id === "tpb" ? "/run/tp-bench" : `/run/tp-bench-${cfg.id}`;
const WS = cfg.namespaces.workstation;
const CL = cfg.namespaces.cluster;
const echo = labService(cfg, "echo");
const iperf = labService(cfg, "iperf");
const HTTP_PORT = echo.ports["http"]!.port;
const TCP_ECHO = echo.ports["tcp-echo"]!.port;
const IPERF_PORT = iperf.ports["iperf"]!.port;
const V4_SUBNETS = [...cfg.subnets.service, ...cfg.subnets.pod].filter((c) => !c.includes(":"));

const log = (s: string) => console.error(`bench: ${s}`);

// ---------------------------------------------------------------- prerequisites

/** Each tool the bench runs and the Debian package that has it. */
const TOOLS: [string, string][] = [
  ["ip", "iproute2"],
  ["curl", "curl"],
  ["dnsmasq", "dnsmasq-base"],
  ["iperf3", "iperf3"],
  ["wrk", "wrk"],
  ["dnsperf", "dnsperf"],
  ["sshuttle", "sshuttle"],
  ["sshd", "openssh-server"],
  ["ssh", "openssh-client"],
  ["ssh-keygen", "openssh-client"],
  ["python3", "python3"],
];

function which(tool: string): string | null {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":"), "/usr/sbin", "/sbin"];
  for (const d of dirs) {
    try {
      if (Deno.statSync(`${d}/${tool}`).isFile) return `${d}/${tool}`;
    } catch { /* not here */ }
  }
  return null;
}

function checkPrerequisites(): void {
  if (Deno.uid() !== 0) throw new Error("scripts/bench needs root (network namespaces, a TUN device, routes)");
  const missing = new Set<string>();
  for (const [tool, pkg] of TOOLS) {
    if (tool === "sshuttle" || tool === "sshd" || tool === "ssh" || tool === "ssh-keygen" || tool === "python3") {
      if (!paths.includes("sshuttle")) continue;
    }
    if (!which(tool)) missing.add(`${pkg} (for ${tool})`);
  }
  if (paths.includes("sshuttle") && !which("nft") && !which("iptables")) missing.add("nftables or iptables");
  if (missing.size) {
    throw new Error(
      `scripts/bench needs these Debian packages: ${[...missing].join(", ")}.\n` +
        `  apt-get install -y ${[...missing].map((m) => m.split(" ")[0]).join(" ")}`,
    );
  }
}

// ---------------------------------------------------------------- processes

type RunResult = ExecResult;

/** Runs a command to completion in its own session, killing its whole group (by its id) after `timeoutMs`. */
const run = exec;

const inWs = (cmd: string[], opts: { timeoutMs?: number; env?: Record<string, string> } = {}) =>
  run(["ip", "netns", "exec", WS, ...cmd], opts);

/** A background process of the bench's own: stdout read line by line, stderr kept (the last 20 kB). */
class Background {
  readonly pid: number;
  readonly #child: Deno.ChildProcess;
  readonly #lines: string[] = [];
  readonly #waiters: (() => void)[] = [];
  #stderr = "";
  #done = false;
  readonly #drained: Promise<void>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array> | null;

  constructor(readonly name: string, cmd: string[], opts: { stdin?: boolean; env?: Record<string, string> } = {}) {
    // setsid: the process leads a group of its own, so its children end with it (killed by the group's id).
    const child = new Deno.Command("setsid", {
      args: cmd,
      stdin: opts.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      ...(opts.env ? { env: opts.env } : {}),
    }).spawn();
    this.#child = child;
    this.pid = child.pid;
    this.#writer = opts.stdin ? child.stdin.getWriter() : null;
    const out = (async () => {
      let buf = "";
      for await (const s of child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += s;
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          this.#lines.push(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          this.#waiters.splice(0).forEach((w) => w());
        }
      }
    })();
    const err = (async () => {
      for await (const s of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderr = (this.#stderr + s).slice(-20_000);
      }
    })();
    this.#drained = Promise.all([out, err]).then(() => {
      this.#done = true;
      this.#waiters.splice(0).forEach((w) => w());
    });
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The next stdout line, or null once the process closed its stdout or `timeoutMs` passed. */
  async line(timeoutMs: number): Promise<string | null> {
    const deadline = performance.now() + timeoutMs;
    while (this.#lines.length === 0 && !this.#done && performance.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - performance.now()));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.#lines.shift() ?? null;
  }

  async json<T>(timeoutMs: number): Promise<T> {
    const l = await this.line(timeoutMs);
    if (l === null) throw new Error(`${this.name} said nothing within ${timeoutMs} ms: ${this.#stderr.trim()}`);
    return JSON.parse(l) as T;
  }

  async write(s: string): Promise<void> {
    await this.#writer?.write(new TextEncoder().encode(s));
  }

  async closeStdin(): Promise<void> {
    await this.#writer?.close().catch(() => {});
  }

  /**
   * SIGTERM to the process (so sshuttle, sshd and tp's manager clean up as they do on Ctrl-C), SIGKILL to it after
   * `graceMs`; then SIGKILL to what is left of its process group (its children), by the group's id.
   */
  async stop(graceMs = 3000): Promise<void> {
    await this.closeStdin();
    const kill = (pid: number, sig: Deno.Signal) => {
      try {
        Deno.kill(pid, sig);
      } catch { /* gone */ }
    };
    kill(this.pid, "SIGTERM");
    const t = setTimeout(() => kill(this.pid, "SIGKILL"), graceMs);
    await this.#child.status;
    clearTimeout(t);
    kill(-this.pid, "SIGKILL");
    await this.#drained;
  }

  get status(): Promise<Deno.CommandStatus> {
    return this.#child.status;
  }
}

const started: Background[] = [];
function background(name: string, cmd: string[], opts: { stdin?: boolean; env?: Record<string, string> } = {}) {
  const b = new Background(name, cmd, opts);
  started.push(b);
  return b;
}

/** Stops one background process and forgets it. */
async function finish(b: Background): Promise<void> {
  const i = started.indexOf(b);
  if (i >= 0) started.splice(i, 1);
  await b.stop();
}

async function stopAll(): Promise<void> {
  for (const b of started.splice(0).reverse()) await b.stop();
}

// ---------------------------------------------------------------- /proc

// ---------------------------------------------------------------- measures

/**
 * Figures by name: tcpUp1Gbps, udp500Mbps, udp500LossPct, httpConnPerSec, httpConn8PerSec, rrP50Us, rrIdle100P50Us,
 * connect200Ms, ttfb200Ms, dnsQps, daemonIdleCpuPct, ... (ROWS lists them all).
 */
type Measures = Record<string, number>;

interface PathResult {
  measures: Measures;
  details: Record<string, unknown>;
  errors: string[];
}

async function iperfTcp(reverse: boolean, streams: number): Promise<{ gbps: number; detail: unknown }> {
  const args = ["iperf3", "-c", iperf.serviceIp, "-p", String(IPERF_PORT), "-t", String(IPERF_SECONDS), "-J"];
  args.push("--connect-timeout", "3000", "-P", String(streams));
  if (reverse) args.push("-R");
  const r = await inWs(args, { timeoutMs: (IPERF_SECONDS + 12) * 1000 });
  const j = JSON.parse(r.stdout || "{}");
  if (j.error || r.code !== 0) throw new Error(`iperf3 ${args.slice(1).join(" ")}: ${j.error ?? r.stderr.trim()}`);
  const rx = j.end.sum_received.bits_per_second as number;
  return {
    gbps: rx / 1e9,
    detail: { receivedBps: rx, sentBps: j.end.sum_sent.bits_per_second, retransmits: j.end.sum_sent.retransmits },
  };
}

async function iperfUdp(rate: string): Promise<{ mbps: number; lossPct: number; detail: unknown }> {
  const args = ["iperf3", "-c", iperf.serviceIp, "-p", String(UDP_IPERF_PORT), "-t", String(IPERF_SECONDS), "-J", "-u"];
  args.push("--connect-timeout", "3000", "-b", rate, "-l", "1200");
  const r = await inWs(args, { timeoutMs: (IPERF_SECONDS + 12) * 1000 });
  const j = JSON.parse(r.stdout || "{}");
  if (j.error || r.code !== 0) throw new Error(`iperf3 ${args.slice(1).join(" ")}: ${j.error ?? r.stderr.trim()}`);
  // iperf3 3.12: end.sum_received is the receiver's view (bits_per_second is what arrived: the goodput, loss already
  // out), end.sum_sent the sender's (what it managed to offer), end.sum the loss.
  const received = j.end.sum_received?.bits_per_second as number | undefined;
  const sent = (j.end.sum_sent ?? j.end.sum).bits_per_second as number;
  const lostPct = (j.end.sum.lost_percent ?? 0) as number;
  return {
    mbps: (received ?? sent * (1 - lostPct / 100)) / 1e6,
    lossPct: lostPct,
    detail: {
      sentMbps: sent / 1e6,
      receivedMbps: received === undefined ? null : received / 1e6,
      packets: j.end.sum.packets,
      lost: j.end.sum.lost_packets,
    },
  };
}

async function wrk(connections: number): Promise<{ perSec: number; detail: unknown }> {
  const url = `http://${echo.serviceIp}:${HTTP_PORT}/`;
  const r = await inWs(
    ["wrk", "-t2", `-c${connections}`, `-d${IPERF_SECONDS}s`, "--timeout", "2s", "-H", "Connection: close", url],
    { timeoutMs: (IPERF_SECONDS + 15) * 1000 },
  );
  const m = r.stdout.match(/Requests\/sec:\s+([\d.]+)/);
  if (r.code !== 0 || !m) throw new Error(`wrk: ${r.stderr.trim() || r.stdout.trim()}`);
  const errors = r.stdout.match(/Socket errors:.*/)?.[0] ?? null;
  const non2xx = r.stdout.match(/Non-2xx or 3xx responses: (\d+)/)?.[1] ?? "0";
  return {
    perSec: Number(m[1]),
    detail: { connections, socketErrors: errors, non2xx: Number(non2xx) },
  };
}

async function rr(): Promise<{ p50: number; p99: number; detail: unknown }> {
  const r = await inWs(client("rr", echo.serviceIp, String(TCP_ECHO)), { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`rr client: ${r.stderr.trim()}`);
  const j = JSON.parse(r.stdout) as { p50Us: number; p99Us: number };
  return { p50: j.p50Us, p99: j.p99Us, detail: j };
}

interface Quantiles {
  n: number;
  p50Us: number;
  p99Us: number;
  minUs: number;
  maxUs: number;
}

/** Request/response on one connection after each idle gap (scripts/bench_client.ts idle). */
async function rrIdle(): Promise<Record<string, Quantiles>> {
  const r = await inWs(
    client("idle", echo.serviceIp, String(TCP_ECHO), "--gaps", IDLE_GAPS.join(",")),
    { timeoutMs: 90_000 },
  );
  if (r.code !== 0) throw new Error(`idle client: ${r.stderr.trim()}`);
  return (JSON.parse(r.stdout) as { gaps: Record<string, Quantiles> }).gaps;
}

/** New connections after each idle gap: connect() and first byte (scripts/bench_client.ts connect). */
async function connectIdle(): Promise<Record<string, { connect: Quantiles; ttfb: Quantiles }>> {
  const r = await inWs(
    client("connect", echo.serviceIp, String(HTTP_PORT), "--gaps", CONNECT_GAPS.join(",")),
    { timeoutMs: 90_000 },
  );
  if (r.code !== 0) throw new Error(`connect client: ${r.stderr.trim()}`);
  return (JSON.parse(r.stdout) as { gaps: Record<string, { connect: Quantiles; ttfb: Quantiles }> }).gaps;
}

/** dnsperf, 4 clients, one name asked again and again, against `server` for DNSPERF_SECONDS. */
async function dnsperf(server: string): Promise<{ qps: number; detail: Record<string, unknown> }> {
  const dir = await Deno.makeTempDir({ prefix: "tp-bench-dns-" });
  try {
    await Deno.writeTextFile(`${dir}/queries`, `${DNS_NAME} A\n`);
    const args = ["dnsperf", "-s", server, "-d", `${dir}/queries`, "-c", "4", "-l", String(DNSPERF_SECONDS)];
    args.push("-t", "2");
    const r = await inWs(args, { timeoutMs: (DNSPERF_SECONDS + 15) * 1000 });
    const qps = r.stdout.match(/Queries per second:\s+([\d.]+)/)?.[1];
    if (r.code !== 0 || qps === undefined) throw new Error(`dnsperf: ${r.stderr.trim() || r.stdout.trim()}`);
    const num = (re: RegExp) => Number(r.stdout.match(re)?.[1] ?? NaN);
    return {
      qps: Number(qps),
      detail: {
        server,
        completed: num(/Queries completed:\s+(\d+)/),
        lost: num(/Queries lost:\s+(\d+)/),
        avgLatencyUs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1e6,
      },
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * CPU the path's own processes use with nothing flowing, in percent of one core (scheduler time, nanoseconds), as
 * `<name>IdleCpuPct`; measured first, before any measure leaves connections or timers behind.
 */
async function measureIdleCpu(res: PathResult, sets: Record<string, () => number[]>): Promise<void> {
  if (!wanted("idleCpu")) return;
  const r = await idleCpu(sets);
  for (const [k, v] of Object.entries(r)) {
    if (k.endsWith("WakeupsPerSec")) res.measures[k] = v;
    else res.measures[`${k}IdleCpuPct`] = v;
  }
  res.details.idleCpu = { seconds: IDLE_CPU_SECONDS, pct: r };
}

async function idleCpu(sets: Record<string, () => number[]>): Promise<Record<string, number>> {
  // /proc/PID/stat's CPU time (10 ms ticks, but it keeps the time of threads that ended: Deno's blocking-pool
  // threads come and go) over IDLE_CPU_SECONDS: 0.1 % resolution.
  const sum = (f: (pid: number) => number) =>
    Object.fromEntries(Object.entries(sets).map(([k, pids]) => [k, pids().reduce((a, p) => a + f(p), 0)]));
  await new Promise((r) => setTimeout(r, 1000)); // what the last measure left (timers, closing connections) settles
  const c0 = sum(cpuSeconds), w0 = sum(contextSwitches), t0 = performance.now();
  await new Promise((r) => setTimeout(r, IDLE_CPU_SECONDS * 1000));
  const c1 = sum(cpuSeconds), w1 = sum(contextSwitches), wall = (performance.now() - t0) / 1000;
  const out: Record<string, number> = {};
  for (const k of Object.keys(c1)) {
    out[k] = (100 * (c1[k]! - c0[k]!)) / wall;
    out[`${k}WakeupsPerSec`] = (w1[k]! - w0[k]!) / wall;
  }
  return out;
}

/**
 * Memory per idle connection in steady state: `count` connections opened and closed once (the process's heap grows
 * to the size such a burst needs, and RSS does not give it back), then opened again and measured. The first
 * round's figure, which is mostly that one-time growth, is kept in the details.
 */
async function steadyIdleMemory(
  pids: () => number[],
  notes: string[],
): Promise<{ perConn: number; detail: Record<string, unknown> }> {
  const first = await idleMemory(pids, notes);
  await new Promise((r) => setTimeout(r, 1000));
  const second = await idleMemory(pids, notes);
  return { perConn: second.perConn, detail: { ...second.detail, firstRoundKiBPerConn: first.perConn } };
}

/** Opens `count` idle connections to the TCP echo and returns the KiB per connection of `pids`' RSS. */
async function idleMemory(
  pids: () => number[],
  notes: string[],
  count = HELD_CONNECTIONS,
): Promise<{ perConn: number; detail: Record<string, unknown> }> {
  const sum = () => pids().reduce((a, p) => a + rssKiB(p), 0);
  await new Promise((r) => setTimeout(r, 500));
  const before = sum();
  const holder = background(
    "hold client",
    ["ip", "netns", "exec", WS, ...client("hold", echo.serviceIp, String(TCP_ECHO), "--count", String(count))],
    { stdin: true },
  );
  try {
    const h = await holder.json<{ opened: number; failed: number; firstError: string; ms: number }>(90_000);
    await new Promise((r) => setTimeout(r, 1000));
    const after = sum();
    if (pids().length && (before === 0 || after === 0)) throw new Error("the measured process is gone");
    if (h.opened === 0) throw new Error(`no connection opened: ${h.firstError}`);
    if (h.opened < count) {
      notes.push(`held only ${h.opened} of ${count} idle connections (then: ${h.firstError})`);
    }
    return {
      perConn: (after - before) / h.opened,
      detail: { rssBeforeKiB: before, rssAfterKiB: after, ...h },
    };
  } finally {
    await finish(holder);
  }
}

/** Starts the "first request" prober; `go()` starts its clock and resolves to its result. */
async function firstRequestProber(): Promise<{ go: () => Promise<void>; result: () => Promise<number> }> {
  const p = background("first-request prober", [
    "ip",
    "netns",
    "exec",
    WS,
    ...client("first", echo.serviceIp, String(HTTP_PORT)),
  ], {
    stdin: true,
  });
  await p.json<{ ready: boolean }>(30_000);
  return {
    go: () => p.write("go\n"),
    result: async () => {
      const j = await p.json<{ ok: boolean; ms: number; attempts: number }>(15_000);
      await finish(p);
      if (!j.ok) throw new Error(`no request succeeded within ${Math.round(j.ms)} ms (${j.attempts} attempts)`);
      return j.ms;
    },
  };
}

/** One HTTP GET through whatever path is up; throws when it fails. */
async function checkReachable(what: string): Promise<void> {
  const r = await inWs([
    "curl",
    "-sS",
    "-m",
    "5",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    `http://${echo.serviceIp}:${HTTP_PORT}/bench-check`,
  ]);
  if (r.stdout !== "200") throw new Error(`${what}: the echo service is not reachable (${r.stderr.trim()})`);
}

/** What a measure costs: CPU seconds of the given processes while it runs, and the daemon's counters moved. */
interface Observer {
  before(): Promise<void>;
  after(): Promise<Record<string, unknown>>;
}

/** Runs every measure of the suite over the path that is up, recording each failure rather than stopping. */
async function suite(
  name: PathName,
  res: PathResult,
  observer: Observer | null,
  opts: {
    udp: boolean;
    /** The DNS server dnsperf asks, or null when the path carries no DNS of its own. */
    dns: string | null;
    wrap?: (key: string, f: () => Promise<void>) => Promise<void>;
  },
): Promise<void> {
  const m = res.measures;
  const step = async (key: string, f: () => Promise<void>) => {
    if (ending?.begun) return; // interrupted: the lab is going down
    if (!wanted(STEP_OF[key] ?? key)) return;
    const t0 = performance.now();
    try {
      await observer?.before();
      await (opts.wrap ? opts.wrap(key, f) : f());
      if (observer) res.details[`${key}.observed`] = await observer.after();
    } catch (e) {
      res.errors.push(`${key}: ${(e as Error).message}`);
      log(`${name} ${key} failed: ${(e as Error).message}`);
    }
    log(`${name} ${key} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  };
  const tcp = (key: keyof Measures, reverse: boolean, streams: number) =>
    step(key, async () => {
      const r = await iperfTcp(reverse, streams);
      m[key] = r.gbps;
      res.details[key] = r.detail;
    });
  await tcp("tcpUp1Gbps", false, 1);
  await tcp("tcpDown1Gbps", true, 1);
  await tcp("tcpUp4Gbps", false, 4);
  await tcp("tcpDown4Gbps", true, 4);
  if (opts.udp) {
    for (const rate of UDP_RATES) {
      const name = rate === "0" ? "udpMax" : `udp${rate.replace("M", "")}`;
      await step(name, async () => {
        const r = await iperfUdp(rate);
        m[`${name}Mbps`] = r.mbps;
        m[`${name}LossPct`] = r.lossPct;
        res.details[name] = r.detail;
      });
    }
  }
  await step("httpConnPerSec", async () => {
    const r = await wrk(WRK_CONNECTIONS);
    m.httpConnPerSec = r.perSec;
    res.details.httpConnPerSec = r.detail;
  });
  await step("httpConn8PerSec", async () => {
    const r = await wrk(WRK_FEW_CONNECTIONS);
    m.httpConn8PerSec = r.perSec;
    res.details.httpConn8PerSec = r.detail;
  });
  await step("rr", async () => {
    const r = await rr();
    m.rrP50Us = r.p50;
    m.rrP99Us = r.p99;
    res.details.rr = r.detail;
  });
  await step("idle", async () => {
    const r = await rrIdle();
    for (const [gap, q] of Object.entries(r)) {
      m[`rrIdle${gap}P50Us`] = q.p50Us;
      m[`rrIdle${gap}P99Us`] = q.p99Us;
    }
    res.details.idle = r;
  });
  await step("connect", async () => {
    const r = await connectIdle();
    for (const [gap, q] of Object.entries(r)) {
      m[`connect${gap}Ms`] = q.connect.p50Us / 1000;
      m[`ttfb${gap}Ms`] = q.ttfb.p50Us / 1000;
    }
    res.details.connect = r;
  });
  const dns = opts.dns;
  if (dns !== null) {
    await step("dns", async () => {
      // One query first: the name is in tp's cache from then on (its TTL, 5 s in the lab, is renewed as it runs out).
      await inWs(["dig", "+short", "+time=2", `@${dns}`, DNS_NAME]);
      const r = await dnsperf(dns);
      m.dnsQps = r.qps;
      res.details.dns = r.detail;
    });
  }
}

/** The `--only` step each measure belongs to. */
const STEP_OF: Record<string, string> = {
  tcpUp1Gbps: "tcp",
  tcpDown1Gbps: "tcp",
  tcpUp4Gbps: "tcp",
  tcpDown4Gbps: "tcp",
  udp200: "udp",
  udp500: "udp",
  udp1000: "udp",
  udpMax: "udp",
  httpConnPerSec: "wrk",
  httpConn8PerSec: "wrk",
};

// ---------------------------------------------------------------- V8 profiles (--profile)

const PROFILER = `${ROOT}/scripts/bench_profile.ts`;
const DAEMON_INSPECT = "127.0.0.1:9239";
const MANAGER_INSPECT = "127.0.0.1:9240";

/** Runs `f` while V8 profiles the daemon and the manager; writes .bench/profile-<tag>-*.cpuprofile. */
async function profileDuring(tag: string, res: PathResult, f: () => Promise<void>): Promise<void> {
  const clients = ([["daemon", WS, DAEMON_INSPECT], ["manager", CL, MANAGER_INSPECT]] as const).map((
    [who, ns, at],
  ) => ({
    who,
    b: background(`profiler ${who}`, [
      "ip",
      "netns",
      "exec",
      ns,
      DENO,
      "run",
      "--allow-net",
      "--allow-write",
      PROFILER,
      at,
      `${ROOT}/.bench/profile-${tag}-${who}.cpuprofile`,
    ], { stdin: true }),
  }));
  try {
    for (const c of clients) await c.b.json<{ ready: boolean }>(15_000);
    await f();
  } finally {
    const out: Record<string, unknown> = {};
    for (const c of clients) {
      await c.b.closeStdin();
      out[c.who] = await c.b.json(30_000).catch((e) => `no profile: ${(e as Error).message}`);
      await finish(c.b);
    }
    res.details[`${tag}.profile`] = out;
    log(`profiles: .bench/profile-${tag}-{daemon,manager}.cpuprofile`);
  }
}

// ---------------------------------------------------------------- the paths

async function kernelPath(): Promise<PathResult> {
  const res: PathResult = { measures: {}, details: {}, errors: [] };
  const added: string[] = [];
  try {
    for (const c of V4_SUBNETS) {
      await must(`ip route add ${c}`, inWs(["ip", "route", "add", c, "via", cfg.veth.clusterIp]));
      added.push(c);
    }
    await checkReachable("kernel route");
    await suite("kernel", res, null, { udp: true, dns: cfg.clusterDns.ip });
    if (wanted("capacity")) {
      const cap = await idleMemory(() => [], res.errors, CAPACITY_CONNECTIONS);
      res.measures.connectionsHeld = cap.detail.opened as number;
    }
  } catch (e) {
    res.errors.push((e as Error).message);
  } finally {
    for (const c of added) await inWs(["ip", "route", "del", c, "via", cfg.veth.clusterIp]);
  }
  return res;
}

async function sshuttlePath(): Promise<PathResult> {
  const res: PathResult = { measures: {}, details: {}, errors: [] };
  const dir = await Deno.makeTempDir({ prefix: "tp-bench-ssh-" });
  const added: string[] = [];
  let sshd: Background | null = null;
  let sshuttle: Background | null = null;
  try {
    for (const k of ["host_key", "client_key"]) {
      await must("ssh-keygen", run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", `${dir}/${k}`]));
    }
    await Deno.copyFile(`${dir}/client_key.pub`, `${dir}/authorized_keys`);
    const port = 2222;
    await Deno.writeTextFile(
      `${dir}/sshd_config`,
      [
        `ListenAddress ${cfg.veth.clusterIp}:${port}`,
        `HostKey ${dir}/host_key`,
        `AuthorizedKeysFile ${dir}/authorized_keys`,
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no", // the temp dir is not root's ~/.ssh
        `PidFile ${dir}/sshd.pid`,
      ].join("\n") + "\n",
    );
    await Deno.mkdir("/run/sshd", { recursive: true }); // sshd's privilege separation directory
    const sshdBin = which("sshd")!;
    sshd = background("sshd", ["ip", "netns", "exec", CL, sshdBin, "-D", "-e", "-f", `${dir}/sshd_config`]);
    for (let i = 0; i < 100; i++) {
      const r = await run(["ip", "netns", "exec", CL, "ss", "-Htln", `sport = :${port}`]);
      if (r.stdout.trim()) break;
      if (i === 99) throw new Error(`sshd did not listen on ${cfg.veth.clusterIp}:${port}: ${sshd.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    // A route for connect() to find (as a laptop's default route would be): to the lab's silent next hop, so a
    // packet that sshuttle's NAT rule does not catch goes nowhere, and nothing is measured by mistake.
    for (const c of V4_SUBNETS) {
      await must(`ip route add ${c}`, inWs(["ip", "route", "add", c, "via", cfg.veth.silentNextHop]));
      added.push(c);
    }
    const ssh = `ssh -i ${dir}/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null ` +
      `-o LogLevel=ERROR -o BatchMode=yes`;
    const prober = await firstRequestProber();
    await prober.go();
    sshuttle = background("sshuttle", [
      "ip",
      "netns",
      "exec",
      WS,
      "sshuttle",
      "-r",
      `root@${cfg.veth.clusterIp}:${port}`,
      "-e",
      ssh,
      ...V4_SUBNETS,
    ]);
    try {
      res.measures.firstRequestMs = await prober.result();
    } catch (e) {
      throw new Error(`sshuttle: ${(e as Error).message}; sshuttle said: ${sshuttle.stderr.trim()}`);
    }
    const method = (await inWs(["nft", "list", "ruleset"])).stdout.includes("sshuttle") ? "nft" : "iptables?";
    res.details.firewall = method;
    await checkReachable("sshuttle");
    const shPid = sshuttle.pid;
    await measureIdleCpu(res, { sshuttle: () => processTree(shPid) });
    try {
      if (wanted("memory")) {
        const mem = await steadyIdleMemory(() => processTree(shPid), res.errors);
        res.measures.idleKiBPerConn = mem.perConn;
        res.details.idleMemory = { ...mem.detail, what: "sshuttle's client processes (sshuttle, its firewall, ssh)" };
      }
    } catch (e) {
      res.errors.push(`idleMemory: ${(e as Error).message}`);
    }
    const observer = cpuObserver({ sshuttle: () => processTree(shPid) }, null);
    await suite("sshuttle", res, observer, { udp: false, dns: null });
    res.errors.push(
      "udp: not measured; sshuttle's nat/nft methods carry TCP only (UDP needs --method tproxy with policy routing)",
    );
  } catch (e) {
    res.errors.push((e as Error).message);
  } finally {
    for (const b of [sshuttle, sshd]) {
      if (b) await finish(b);
    }
    for (const c of added) await inWs(["ip", "route", "del", c, "via", cfg.veth.silentNextHop]);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return res;
}

/** CPU seconds of named process sets across a measure, and (for tp) the daemon's counters moved. */
function cpuObserver(sets: Record<string, () => number[]>, status: (() => Promise<unknown>) | null): Observer {
  let t0 = 0;
  let cpu0: Record<string, number> = {};
  let s0: unknown = null;
  const cpu = () =>
    Object.fromEntries(Object.entries(sets).map(([k, f]) => [k, f().reduce((a, p) => a + cpuSeconds(p), 0)]));
  return {
    async before() {
      s0 = status ? await status() : null;
      cpu0 = cpu();
      t0 = performance.now();
    },
    async after() {
      const wall = (performance.now() - t0) / 1000;
      const c1 = cpu();
      const out: Record<string, unknown> = { wallSeconds: round(wall, 2) };
      for (const k of Object.keys(c1)) out[`${k}CpuPct`] = round((100 * (c1[k]! - cpu0[k]!)) / wall, 0);
      for (const [k, f] of Object.entries(sets)) {
        out[`${k}RssMiB`] = round(f().reduce((a, p) => a + rssKiB(p), 0) / 1024, 0);
      }
      if (status) out.counters = diff(s0, await status());
      return out;
    },
  };
}

/** Numeric fields that changed between two snapshots of the same shape. */
function diff(a: unknown, b: unknown): unknown {
  if (typeof a === "number" && typeof b === "number") return b - a || undefined;
  if (a && b && typeof a === "object" && typeof b === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(b as object)) {
      const d = diff((a as Record<string, unknown>)[k] ?? 0, (b as Record<string, unknown>)[k]);
      if (d !== undefined && !(typeof d === "object" && Object.keys(d as object).length === 0)) out[k] = d;
    }
    return out;
  }
  return undefined;
}

/** A step left out by `--only`. */
class Skipped extends Error {}

async function tpPath(): Promise<PathResult> {
  const res: PathResult = { measures: {}, details: {}, errors: [] };
  const env = { ...Deno.env.toObject(), TP_STATE_DIR: STATE_DIR, NO_COLOR: "1" };
  let manager: Background | null = null;
  let foreground: Background | null = null;
  let daemon: number | null = null;
  try {
    await must("tp version (warming Deno's module cache)", run([TP, "version"], { timeoutMs: 60_000 }));
    const args = ["--listen", `${cfg.manager.ip}:${cfg.manager.port}`];
    for (const c of cfg.subnets.pod) args.push("--pod-cidr", c);
    for (const c of cfg.subnets.service) args.push("--service-cidr", c);
    args.push("--dns-server", `${cfg.clusterDns.ip}:${cfg.clusterDns.port}`);
    const main = `${ROOT}/cli/main.ts`;
    manager = background(
      "tp manager",
      profile
        ? [
          "ip",
          "netns",
          "exec",
          CL,
          DENO,
          "run",
          "-A",
          "--quiet",
          `--inspect=${MANAGER_INSPECT}`,
          main,
          "manager",
          ...args,
        ]
        : ["ip", "netns", "exec", CL, TP, "manager", ...args],
    );
    const managerUrl = `http://${cfg.manager.ip}:${cfg.manager.port}`;
    for (let i = 0; i < 100; i++) {
      const r = await inWs(["curl", "-s", "-o", "/dev/null", "-m", "1", "-w", "%{http_code}", `${managerUrl}/metrics`]);
      if (r.stdout === "200") break;
      if (i === 99) throw new Error(`tp manager did not serve ${managerUrl}: ${manager.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const prober = await firstRequestProber();
    await prober.go();
    if (profile) {
      // The daemon in the foreground under the inspector: the start-up figure then includes the inspector's cost.
      foreground = background("tp daemon (inspected)", [
        "ip",
        "netns",
        "exec",
        WS,
        DENO,
        "run",
        "-A",
        "--quiet",
        `--inspect=${DAEMON_INSPECT}`,
        main,
        "connect",
        "--foreground",
        "--manager-url",
        managerUrl,
      ], { env });
      res.measures.firstRequestMs = await prober.result();
      res.details.connect = { note: "--profile: the daemon ran in the foreground under --inspect" };
    } else {
      const c = await inWs([TP, "connect", "--manager-url", managerUrl], { timeoutMs: 30_000, env });
      if (c.code !== 0) throw new Error(`tp connect failed (exit ${c.code}): ${c.stderr.trim()}`);
      res.measures.firstRequestMs = await prober.result();
      const said = c.stderr.match(/connected in (\d+) ms/)?.[1];
      res.details.connect = { commandMs: round(c.ms, 0), daemonSays: said === undefined ? null : Number(said) };
    }
    for (let i = 0; i < 100 && !(await Deno.stat(`${STATE_DIR}/daemon.json`).catch(() => null)); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    daemon = JSON.parse(await Deno.readTextFile(`${STATE_DIR}/daemon.json`)).pid as number;
    res.details.daemonPid = daemon;
    await checkReachable("tp");
    const d = daemon;
    const m = manager.pid;
    await measureIdleCpu(res, { daemon: () => [d], manager: () => [m] });
    // Memory first, while the daemon's heap is young: after the throughput runs, garbage collection moves its RSS
    // by more than the held connections do.
    try {
      if (!wanted("memory")) throw new Skipped();
      const managerBefore = rssKiB(m);
      const mem = await steadyIdleMemory(() => [d], res.errors);
      res.measures.idleKiBPerConn = mem.perConn;
      res.details.idleMemory = {
        ...mem.detail,
        what: "the daemon's RSS",
        managerRssKiB: { before: managerBefore, after: rssKiB(m) },
      };
    } catch (e) {
      if (!(e instanceof Skipped)) res.errors.push(`idleMemory: ${(e as Error).message}`);
    }
    const status = () => controlRequest(`${STATE_DIR}/daemon.sock`, { op: "status" });
    const observer = cpuObserver({ daemon: () => [d], manager: () => [m] }, status);
    const dnsAddress = ((await status()) as { dns?: { address?: string } }).dns?.address ?? null;
    await suite("tp", res, observer, {
      udp: true,
      dns: dnsAddress,
      wrap: (key, f) =>
        profile && ["tcpUp1Gbps", "tcpDown1Gbps", "httpConnPerSec", "rr"].includes(key)
          ? profileDuring(key, res, f)
          : f(),
    });
    // The capacity probe last: opening more connections than the session can carry can end the session.
    try {
      if (!wanted("capacity")) throw new Skipped();
      const cap = await idleMemory(() => [d], res.errors, CAPACITY_CONNECTIONS);
      res.details.capacity = { attempted: CAPACITY_CONNECTIONS, ...cap.detail };
      res.measures.connectionsHeld = cap.detail.opened as number;
    } catch (e) {
      if (!(e instanceof Skipped)) res.errors.push(`capacity: ${(e as Error).message}`);
    }
    res.details.finalStatus = await status();
  } catch (e) {
    res.errors.push((e as Error).message);
  } finally {
    const q = await inWs([TP, "quit"], { timeoutMs: 15_000, env });
    if (q.code !== 0) log(`tp quit: ${q.stderr.trim()}`);
    if (foreground) await finish(foreground);
    if (daemon !== null) {
      try {
        Deno.kill(daemon, "SIGKILL");
      } catch { /* ended by tp quit */ }
    }
    await Deno.copyFile(`${STATE_DIR}/daemon.log`, `${ROOT}/.bench/daemon.log`).catch(() => {});
    if (manager) {
      await finish(manager);
      await Deno.writeTextFile(`${ROOT}/.bench/manager.log`, manager.stderr);
    }
    await Deno.remove(STATE_DIR, { recursive: true }).catch(() => {});
  }
  return res;
}

// ---------------------------------------------------------------- report

interface Row {
  key: string;
  label: string;
  unit: string;
  better: "higher" | "lower";
  digits: number;
}

const ROWS: Row[] = [
  { key: "tcpUp1Gbps", label: "TCP upload, 1 stream", unit: "Gbit/s", better: "higher", digits: 2 },
  { key: "tcpDown1Gbps", label: "TCP download, 1 stream", unit: "Gbit/s", better: "higher", digits: 2 },
  { key: "tcpUp4Gbps", label: "TCP upload, 4 streams", unit: "Gbit/s", better: "higher", digits: 2 },
  { key: "tcpDown4Gbps", label: "TCP download, 4 streams", unit: "Gbit/s", better: "higher", digits: 2 },
  ...UDP_RATES.flatMap((rate): Row[] => {
    const name = rate === "0" ? "udpMax" : `udp${rate.replace("M", "")}`;
    const offered = rate === "0" ? "unlimited" : `${rate.replace("M", "")} Mbit/s offered`;
    return [
      { key: `${name}Mbps`, label: `UDP received, ${offered}`, unit: "Mbit/s", better: "higher", digits: 0 },
      { key: `${name}LossPct`, label: `UDP loss, ${offered}`, unit: "%", better: "lower", digits: 1 },
    ];
  }),
  {
    key: "httpConnPerSec",
    label: `HTTP new connections, ${WRK_CONNECTIONS} clients`,
    unit: "/s",
    better: "higher",
    digits: 0,
  },
  {
    key: "httpConn8PerSec",
    label: `HTTP new connections, ${WRK_FEW_CONNECTIONS} clients`,
    unit: "/s",
    better: "higher",
    digits: 0,
  },
  { key: "rrP50Us", label: "TCP req/resp p50", unit: "us", better: "lower", digits: 0 },
  { key: "rrP99Us", label: "TCP req/resp p99", unit: "us", better: "lower", digits: 0 },
  ...IDLE_GAPS.flatMap((gap): Row[] =>
    (["P50", "P99"] as const).map((q) => ({
      key: `rrIdle${gap}${q}Us`,
      label: `req/resp ${q.toLowerCase()}, ${gap === 0 ? "back to back" : `${gap} ms idle`}`,
      unit: "us",
      better: "lower",
      digits: 0,
    }))
  ),
  ...CONNECT_GAPS.flatMap((gap): Row[] => [
    { key: `connect${gap}Ms`, label: `connect() p50, ${gap} ms idle`, unit: "ms", better: "lower", digits: 2 },
    { key: `ttfb${gap}Ms`, label: `first byte p50, ${gap} ms idle`, unit: "ms", better: "lower", digits: 2 },
  ]),
  { key: "dnsQps", label: "DNS queries, one cached name", unit: "/s", better: "higher", digits: 0 },
  { key: "daemonIdleCpuPct", label: "idle CPU, tp's daemon", unit: "%", better: "lower", digits: 2 },
  { key: "managerIdleCpuPct", label: "idle CPU, tp's manager", unit: "%", better: "lower", digits: 2 },
  { key: "sshuttleIdleCpuPct", label: "idle CPU, sshuttle", unit: "%", better: "lower", digits: 2 },
  { key: "daemonWakeupsPerSec", label: "idle wake-ups, tp's daemon", unit: "/s", better: "lower", digits: 1 },
  { key: "managerWakeupsPerSec", label: "idle wake-ups, tp's manager", unit: "/s", better: "lower", digits: 1 },
  { key: "firstRequestMs", label: "start to first request", unit: "ms", better: "lower", digits: 0 },
  { key: "idleKiBPerConn", label: "memory per idle conn", unit: "KiB", better: "lower", digits: 1 },
  {
    key: "connectionsHeld",
    label: `idle conns held of ${CAPACITY_CONNECTIONS}`,
    unit: "",
    better: "higher",
    digits: 0,
  },
];

interface Target {
  what: string;
  met: boolean | null;
  value: string;
}

function targets(r: Partial<Record<PathName, PathResult>>): Target[] {
  const tp = r.tp?.measures ?? {};
  const sh = r.sshuttle?.measures ?? {};
  const out: Target[] = [];
  const add = (what: string, v: number | undefined, ok: (v: number) => boolean, show: string) =>
    out.push({ what, met: v === undefined ? null : ok(v), value: v === undefined ? "n/a" : show });
  for (const [k, dir] of [["tcpUp1Gbps", "upload"], ["tcpDown1Gbps", "download"]] as const) {
    const v = tp[k];
    add(`single-stream TCP ${dir} >= 1 Gbit/s`, v, (x) => x >= 1, `${v?.toFixed(2)} Gbit/s`);
    const s = sh[k];
    if (v !== undefined && s !== undefined) {
      add(`single-stream TCP ${dir} >= 3x sshuttle`, v / s, (x) => x >= 3, `${(v / s).toFixed(1)}x`);
    }
  }
  add("TCP req/resp p50 <= 150 us", tp.rrP50Us, (x) => x <= 150, `${tp.rrP50Us?.toFixed(0)} us`);
  add("new HTTP connections >= 5,000/s", tp.httpConnPerSec, (x) => x >= 5000, `${tp.httpConnPerSec?.toFixed(0)}/s`);
  if (tp.httpConnPerSec !== undefined && sh.httpConnPerSec !== undefined) {
    const x = tp.httpConnPerSec / sh.httpConnPerSec;
    add("new HTTP connections >= 2x sshuttle", x, (v) => v >= 2, `${x.toFixed(1)}x`);
  }
  // Issue 16: what a person feels.
  for (const gap of IDLE_GAPS) {
    const v = tp[`rrIdle${gap}P50Us`], s = sh[`rrIdle${gap}P50Us`];
    if (v !== undefined && s !== undefined) {
      add(`req/resp p50 after ${gap} ms idle <= sshuttle's`, v / s, (x) => x <= 1, `${(v / s).toFixed(2)}x`);
    }
  }
  add(
    "first byte of a new connection after 200 ms idle <= 1.5 ms",
    tp.ttfb200Ms,
    (x) => x <= 1.5,
    `${tp.ttfb200Ms?.toFixed(2)} ms`,
  );
  if (tp.httpConn8PerSec !== undefined && sh.httpConn8PerSec !== undefined) {
    const x = tp.httpConn8PerSec / sh.httpConn8PerSec;
    add(`new HTTP connections, ${WRK_FEW_CONNECTIONS} clients, >= 3x sshuttle`, x, (v) => v >= 3, `${x.toFixed(1)}x`);
  }
  const u = tp.udp500Mbps, ul = tp.udp500LossPct;
  add(
    "UDP at 500 Mbit/s: >= 475 received, < 1 % loss",
    u,
    (x) => x >= 475 && (ul ?? 100) < 1,
    `${u?.toFixed(0)} Mbit/s, ${ul?.toFixed(1)} %`,
  );
  const best = Math.max(...UDP_RATES.map((r) => tp[`udp${r === "0" ? "Max" : r.replace("M", "")}Mbps`] ?? 0));
  if (tp.udpMaxMbps !== undefined && best > 0) {
    const x = tp.udpMaxMbps / best;
    add("UDP unlimited: goodput >= 80 % of the best rate's", x, (v) => v >= 0.8, `${(100 * x).toFixed(0)} %`);
  }
  const kd = r.kernel?.measures.dnsQps;
  if (tp.dnsQps !== undefined && kd !== undefined) {
    add("DNS, cached name: >= dnsmasq direct", tp.dnsQps / kd, (x) => x >= 1, `${(tp.dnsQps / kd).toFixed(2)}x`);
  }
  for (const who of ["daemon", "manager"]) {
    const v = tp[`${who}IdleCpuPct`];
    add(`idle CPU of the ${who} < 1 %`, v, (x) => x < 1, `${v?.toFixed(2)} %`);
  }
  add("tp connect to first request < 1 s", tp.firstRequestMs, (x) => x < 1000, `${tp.firstRequestMs?.toFixed(0)} ms`);
  add(
    "daemon memory < 20 KiB per idle connection",
    tp.idleKiBPerConn,
    (x) => x < 20,
    `${tp.idleKiBPerConn?.toFixed(1)} KiB`,
  );
  return out;
}

function table(r: Partial<Record<PathName, PathResult>>): string {
  const fmt = (v: number | undefined, d: number) => v === undefined ? "n/a" : v.toFixed(d);
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || b === 0 ? "n/a" : `${(a / b).toFixed(a / b < 0.1 ? 3 : 2)}x`;
  const head = ["measure", "unit", "kernel", "sshuttle", "tp", "tp/kernel", "tp/sshuttle"];
  const rows = ROWS.map((row) => {
    const v = (p: PathName) => r[p]?.measures[row.key];
    return [
      row.label + (row.better === "lower" ? " (lower is better)" : ""),
      row.unit,
      fmt(v("kernel"), row.digits),
      fmt(v("sshuttle"), row.digits),
      fmt(v("tp"), row.digits),
      ratio(v("tp"), v("kernel")),
      ratio(v("tp"), v("sshuttle")),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) =>
    "| " + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ") + " |";
  return [line(head), "|" + widths.map((w, i) => (i < 2 ? "-" : "-").repeat(w + 2)).join("|") + "|", ...rows.map(line)]
    .join("\n");
}

// ---------------------------------------------------------------- main

async function machine(): Promise<Record<string, unknown>> {
  const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/^model name\s*:\s*(.*)$/m)?.[1] ?? "unknown";
  const ver = async (cmd: string[]) => (await run(cmd).catch(() => null))?.stdout.split("\n")[0]?.trim() ?? null;
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    iperf3: await ver(["iperf3", "--version"]),
    wrk: (await run(["wrk", "-v"]).catch(() => null))?.stdout.split("\n")[0]?.trim() ?? null,
    sshuttle: paths.includes("sshuttle") ? await ver(["sshuttle", "--version"]) : null,
  };
}

/** The run's teardown, once main began: a suite's steps stop starting when it runs. */
let ending: Teardown | null = null;

async function main(teardown: Teardown): Promise<number> {
  ending = teardown;
  checkPrerequisites();
  const t0 = performance.now();
  await Deno.mkdir(`${ROOT}/.bench`, { recursive: true });
  const startedAt = new Date().toISOString();
  const results: Partial<Record<PathName, PathResult>> = {};
  let failure: Error | null = null;
  try {
    log(`lab ${cfg.id} up`);
    teardown.add("lab", () => down(cfg));
    teardown.add("processes", stopAll);
    await down(cfg); // a fresh lab: nothing left from an earlier, interrupted run
    await up(cfg);
    const udpServer = background("iperf3 UDP server", [
      "ip",
      "netns",
      "exec",
      CL,
      "iperf3",
      "-s",
      "-B",
      iperf.serviceIp,
      "-p",
      String(UDP_IPERF_PORT),
    ]);
    for (let i = 0; i < 100; i++) {
      if ((await run(["ip", "netns", "exec", CL, "ss", "-Htln", `sport = :${UDP_IPERF_PORT}`])).stdout.trim()) break;
      if (i === 99) {
        throw new Error(`iperf3 did not listen on ${iperf.serviceIp}:${UDP_IPERF_PORT}: ${udpServer.stderr}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const p of paths) {
      log(`--- ${p}`);
      results[p] = p === "kernel" ? await kernelPath() : p === "sshuttle" ? await sshuttlePath() : await tpPath();
    }
  } catch (e) {
    failure = e as Error;
  } finally {
    await teardown.run();
  }
  const t = targets(results);
  const report = {
    startedAt,
    seconds: round((performance.now() - t0) / 1000, 1),
    lab: cfg.id,
    machine: await machine(),
    settings: {
      iperfSeconds: IPERF_SECONDS,
      wrkConnections: WRK_CONNECTIONS,
      heldConnections: HELD_CONNECTIONS,
      capacityProbe: CAPACITY_CONNECTIONS,
      rr: "64 bytes, one connection, Deno client (scripts/bench_client.ts rr), after 200 warm-up round trips",
      udp: `iperf3 -u -l 1200, offered ${UDP_RATES.join(", ")} (0: unlimited), upload`,
      idle: `64 bytes on one connection after idle gaps of ${IDLE_GAPS.join(", ")} ms (scripts/bench_client.ts idle)`,
      connect: `connect() and first byte of an HTTP GET after ${CONNECT_GAPS.join(", ")} ms idle`,
      dns: `dnsperf -c 4 -l ${DNSPERF_SECONDS}, ${DNS_NAME} A, against tp's DNS and the cluster's directly`,
      idleCpuSeconds: IDLE_CPU_SECONDS,
    },
    results,
    targets: t,
    error: failure?.message ?? null,
  };
  const file = await writeReport("bench", startedAt, report, {
    replacer: (_k, v) => typeof v === "number" ? round(v, 3) : v,
    latest: true,
  });

  console.log(table(results));
  console.log();
  printTargets(t);
  for (const p of paths) for (const e of results[p]?.errors ?? []) console.log(`note (${p}): ${e}`);
  console.log(`\nwritten: ${file} (${report.seconds} s)`);
  if (failure) {
    console.error(`bench: ${failure.message}`);
    return 1;
  }
  return 0;
}

if (import.meta.main) await runBench("bench", main);
