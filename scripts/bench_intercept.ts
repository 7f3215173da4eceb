/**
 * `scripts/deno run -A scripts/bench_intercept.ts [--lab-id tpi]`: intercepted traffic measured beside the same
 * clients hitting the app directly, in one run, on a lab of its own (`tpi-ws` / `tpi-cluster`, a pod `tpi-pod-web`,
 * tp's state in /run/tp-test-tpi), printed as a table of ratios and written to `.bench/intercept-<time>.json`.
 *
 * The setup is tests/intercept_test.ts's: `tp manager` in the cluster namespace, a lab pod (tests/lab_pod.ts) running
 * the app (HTTP echo on 8080, TCP echo on 7007) and `tp agent` beside it (9080 -> 8080, 9007 -> 7007), `tp connect`
 * in the workstation namespace and a local stand-in of the app there (18080, 17007). From the cluster namespace the
 * same clients reach:
 * - direct: the app's own ports in the pod (no agent): the baseline;
 * - agent: the agent's ports, not intercepted (the agent relays to the app);
 * - intercepted: the agent's ports after `tp intercept web --port 18080:8080` and `--port 17007:7007` (agent ->
 *   manager -> the workstation's daemon -> its local app);
 * and, for the issue's target, from the workstation namespace:
 * - outbound: the lab's echo service through tp (`tp connect`'s TUN, the manager dials it).
 *
 * Measures: new HTTP connections per second (wrk, `Connection: close`), request/response p50/p99 on one connection
 * (64 bytes, scripts/bench_client.ts rr, against a TCP echo), and 10,000 HTTP requests with new connections through
 * the intercept (scripts/bench_client.ts burst: each must answer 200 from the workstation's app within 5 s). It
 * records the CPU seconds each process (agent, manager, daemon, apps) spent in each measure.
 *
 * Target (the issue): intercepted p50 within 2x the outbound path's p50; no connection lost in 10,000.
 *
 * Needs root, iproute2, dnsmasq-base, iperf3 (the lab), curl, wrk. Every process it starts is ended by pid, the pod
 * and the lab go down, even on failure. Bounded: about a minute.
 */
import {
  AGENT_HTTP,
  AGENT_TCP,
  APP_HTTP as HTTP,
  APP_TCP as TCP,
  must,
  POD,
  POD_IP,
  printTargets,
  round,
  runBench,
  selectLab,
  startAgentPod,
  type Teardown,
  writeReport,
} from "./_lab_fixture.ts";
import { treeCpuSeconds } from "./_proc.ts";

selectLab("tpi"); // before the lab's helpers are imported: they read TP_LAB_ID
const { inNs, LAB, requireRoot, requireTools, ROOT } = await import("../tests/lab.ts");
const { daemonPid, forceQuit, MANAGER_URL, startLocalApp, STATE_DIR, tp } = await import(
  "../tests/connect_fixture.ts"
);
const { waitFor, whoAnswers: answers } = await import("../tests/lab_pod.ts");
const { labService } = await import("./lab_config.ts");

const DENO = Deno.execPath();
const CLIENT = `${ROOT}/scripts/bench_client.ts`;
const LOCAL_HTTP = 18080, LOCAL_TCP = 17007; // the workstation's local app
const echo = labService(LAB, "echo");
const WRK_SECONDS = 3;
const WRK_CONNECTIONS = 32;
const BURST = 10_000;

const log = (s: string) => console.error(`bench_intercept: ${s}`);

// ---------------------------------------------------------------- processes

/** Which app answers at the pod's agent port ("web" in the pod, "laptop" here). */
const whoAnswers = () => answers(POD_IP, AGENT_HTTP, 5);

// ---------------------------------------------------------------- measures

type Node = "ws" | "cluster";

interface Wrk {
  perSec: number;
  requests: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  non2xx: number;
}

async function wrk(node: Node, host: string, port: number): Promise<Wrk> {
  const url = `http://${host}:${port}/`;
  const r = await inNs(
    node,
    ["wrk", "-t2", `-c${WRK_CONNECTIONS}`, `-d${WRK_SECONDS}s`, "--timeout", "2s", "-H", "Connection: close", url],
    { timeoutMs: (WRK_SECONDS + 15) * 1000 },
  );
  const m = r.stdout.match(/Requests\/sec:\s+([\d.]+)/);
  if (r.code !== 0 || !m) throw new Error(`wrk ${url}: ${r.stderr.trim() || r.stdout.trim()}`);
  const e = r.stdout.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  return {
    perSec: Number(m[1]),
    requests: Number(r.stdout.match(/(\d+) requests in/)?.[1] ?? 0),
    socketErrors: {
      connect: Number(e?.[1] ?? 0),
      read: Number(e?.[2] ?? 0),
      write: Number(e?.[3] ?? 0),
      timeout: Number(e?.[4] ?? 0),
    },
    non2xx: Number(r.stdout.match(/Non-2xx or 3xx responses: (\d+)/)?.[1] ?? 0),
  };
}

interface Rr {
  n: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
  minUs: number;
}

async function rr(node: Node, host: string, port: number): Promise<Rr> {
  const r = await inNs(node, [DENO, "run", "--allow-net", CLIENT, "rr", host, String(port)], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`rr ${host}:${port}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as Rr;
}

interface Burst {
  count: number;
  sent: number;
  ok: number;
  failed: number;
  timeouts: number;
  why: Record<string, number>;
  ms: number;
}

async function burst(host: string, port: number, expect: string): Promise<Burst> {
  const args = [DENO, "run", "--allow-net", CLIENT, "burst", host, String(port), "--count", String(BURST)];
  args.push("--concurrency", String(WRK_CONNECTIONS), "--timeout-ms", "5000", "--ms", "90000", "--expect", expect);
  const r = await inNs("cluster", args, { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`burst ${host}:${port}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as Burst;
}

// ---------------------------------------------------------------- CPU per measure

/** The processes whose CPU time each measure records, by name; a pid of 0 is skipped. */
type Pids = Record<string, number>;

/** Runs `f` and returns its result with the CPU seconds each process (and its children) spent meanwhile. */
async function observed<T>(
  pids: Pids,
  f: () => Promise<T>,
): Promise<{ result: T; cpuSeconds: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, p ? treeCpuSeconds(p) : 0]));
  const result = await f();
  const cpuSeconds = Object.fromEntries(
    Object.entries(pids).map(([k, p]) => [k, p ? round(treeCpuSeconds(p) - before[k]!, 2) : 0]),
  );
  return { result, cpuSeconds };
}

// ---------------------------------------------------------------- report

type PathName = "direct" | "agent" | "intercepted" | "outbound";
const PATHS: PathName[] = ["direct", "agent", "intercepted", "outbound"];

interface PathResult {
  http?: Wrk;
  httpCpu?: Record<string, number>;
  rr?: Rr;
  rrCpu?: Record<string, number>;
}

const ROWS: { label: string; unit: string; get: (r: PathResult) => number | undefined; digits: number }[] = [
  { label: "HTTP new connections", unit: "/s", get: (r) => r.http?.perSec, digits: 0 },
  { label: "req/resp p50 (lower is better)", unit: "us", get: (r) => r.rr?.p50Us, digits: 0 },
  { label: "req/resp p99 (lower is better)", unit: "us", get: (r) => r.rr?.p99Us, digits: 0 },
];

function table(res: Partial<Record<PathName, PathResult>>): string {
  const head = ["measure", "unit", ...PATHS, "agent/direct", "intercepted/direct", "outbound/direct"];
  const fmt = (v: number | undefined, d: number) => v === undefined ? "n/a" : v.toFixed(d);
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || b === 0 ? "n/a" : `${(a / b).toFixed(2)}x`;
  const rows = ROWS.map((row) => {
    const v = (p: PathName) => {
      const r = res[p];
      return r ? row.get(r) : undefined;
    };
    return [
      row.label,
      row.unit,
      ...PATHS.map((p) => fmt(v(p), row.digits)),
      ratio(v("agent"), v("direct")),
      ratio(v("intercepted"), v("direct")),
      ratio(v("outbound"), v("direct")),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    "| " + cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ") + " |";
  return [line(head), "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|", ...rows.map(line)].join("\n");
}

/** CPU milliseconds each process spent per request (HTTP) and per round trip (rr), for the paths through tp. */
function cpuTable(res: Partial<Record<PathName, PathResult>>): string {
  const out: string[] = [];
  for (const p of ["agent", "intercepted", "outbound"] as const) {
    const r = res[p];
    if (!r) continue;
    const per = (cpu: Record<string, number> | undefined, n: number | undefined) =>
      cpu && n
        ? Object.entries(cpu).filter(([, s]) => s > 0).map(([k, s]) => `${k} ${(s * 1e6 / n).toFixed(0)}`).join(", ")
        : "n/a";
    out.push(`  ${p.padEnd(11)} HTTP: ${per(r.httpCpu, r.http?.requests)}`);
    out.push(`  ${"".padEnd(11)} rr:   ${per(r.rrCpu, r.rr?.n)}`);
  }
  return out.join("\n");
}

// ---------------------------------------------------------------- main

async function main(teardown: Teardown): Promise<number> {
  requireRoot();
  requireTools("ip", "dnsmasq", "iperf3", "curl", "wrk");
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const results: Partial<Record<PathName, PathResult>> = {};
  let lost: Burst | undefined;
  let failure: Error | null = null;
  try {
    log(`lab ${LAB.id} up`);
    const { manager, agent } = await startAgentPod(teardown);
    const local = startLocalApp(LOCAL_HTTP, LOCAL_TCP);
    teardown.add("local app", () => local.stop());
    teardown.add("daemon", () => forceQuit()); // tp quit, then SIGKILL to its pid, and its state directory
    await must("tp connect", tp(["connect", "--manager-url", MANAGER_URL]));
    const pids: Pids = {
      agent: agent.pid,
      manager: manager.pid,
      daemon: (await daemonPid()) ?? 0,
      localApp: local.pid,
    };
    await waitFor("the local app", async () => {
      const r = await inNs("ws", ["curl", "-sS", "-m", "2", `http://127.0.0.1:${LOCAL_HTTP}/`]);
      return r.code === 0;
    });
    const who = await whoAnswers();
    if (who !== POD) throw new Error(`before the intercept the agent's port answered "${who}", not "${POD}"`);

    const measure = async (p: PathName, node: Node, host: string, httpPort: number, tcpPort: number) => {
      const r: PathResult = results[p] = {};
      const h = await observed(pids, () => wrk(node, host, httpPort));
      r.http = h.result;
      r.httpCpu = h.cpuSeconds;
      log(`${p}: ${r.http.perSec.toFixed(0)} HTTP connections/s`);
      const x = await observed(pids, () => rr(node, host, tcpPort));
      r.rr = x.result;
      r.rrCpu = x.cpuSeconds;
      log(`${p}: req/resp p50 ${r.rr.p50Us.toFixed(0)} us, p99 ${r.rr.p99Us.toFixed(0)} us`);
    };
    await measure("direct", "cluster", POD_IP, HTTP, TCP);
    await measure("agent", "cluster", POD_IP, AGENT_HTTP, AGENT_TCP);
    await measure("outbound", "ws", echo.serviceIp, echo.ports["http"]!.port, echo.ports["tcp-echo"]!.port);

    await must("tp intercept (HTTP)", tp(["intercept", POD, "--port", `${LOCAL_HTTP}:${HTTP}`]));
    await must("tp intercept (TCP echo)", tp(["intercept", POD, "--port", `${LOCAL_TCP}:${TCP}`]));
    await waitFor("the agent to send connections to the workstation", async () => await whoAnswers() === "laptop");
    const status = async () =>
      (JSON.parse((await must("tp status", tp(["status", "-o", "json"]))).stdout) as {
        intercepts: { connections: number; refused: number };
      }).intercepts;
    const before = await status();
    await measure("intercepted", "cluster", POD_IP, AGENT_HTTP, AGENT_TCP);
    const w = results.intercepted!.http!;
    log(`lost in ${BURST} through the intercept: counting`);
    lost = await burst(POD_IP, AGENT_HTTP, "laptop");
    log(`lost in ${BURST}: ${lost.failed} (${lost.timeouts} timeouts) in ${(lost.ms / 1000).toFixed(1)} s`);
    const after = await status();
    // Every intercepted measure reached the daemon: wrk's requests, rr's one connection, the burst's BURST.
    const reached = after.connections - before.connections;
    if (reached < w.requests + 1 + BURST) {
      throw new Error(`only ${reached} connections reached the daemon of ${w.requests + 1 + BURST} expected`);
    }
  } catch (e) {
    failure = e as Error;
  } finally {
    await teardown.run();
  }

  const p50 = results.intercepted?.rr?.p50Us, out50 = results.outbound?.rr?.p50Us;
  const targets = [
    {
      what: "intercepted req/resp p50 within 2x the outbound path's p50",
      met: p50 !== undefined && out50 !== undefined ? p50 <= 2 * out50 : null,
      value: p50 !== undefined && out50 !== undefined
        ? `${p50.toFixed(0)} us vs ${out50.toFixed(0)} us: ${(p50 / out50).toFixed(2)}x`
        : "n/a",
    },
    {
      what: `no connection lost in ${BURST.toLocaleString("en")} through the intercept`,
      met: lost ? lost.failed === 0 && lost.sent === BURST : null,
      value: lost
        ? `${lost.failed} lost (${lost.timeouts} timeouts${
          Object.keys(lost.why).length ? `; ${JSON.stringify(lost.why)}` : ""
        }), ${(lost.sent / (lost.ms / 1000)).toFixed(0)}/s`
        : "n/a",
    },
  ];
  const wrkErrors = PATHS.flatMap((p) => {
    const h = results[p]?.http;
    if (!h) return [];
    const e = h.socketErrors;
    const n = e.connect + e.read + e.write + e.timeout + h.non2xx;
    return n ? [`wrk ${p}: ${JSON.stringify(e)}, non-2xx ${h.non2xx} of ${h.requests}`] : [];
  });
  const report = {
    startedAt,
    seconds: round((performance.now() - t0) / 1000, 1),
    lab: LAB.id,
    stateDir: STATE_DIR,
    settings: {
      wrk: `-t2 -c${WRK_CONNECTIONS} -d${WRK_SECONDS}s, Connection: close, from the cluster namespace`,
      rr: "64 bytes, one connection, scripts/bench_client.ts rr, after 200 warm-up round trips",
      burst: `${BURST} GETs, new connection each, ${WRK_CONNECTIONS} at a time, 5 s timeout each`,
    },
    results,
    lost: lost ?? null,
    targets,
    error: failure?.message ?? null,
  };
  const file = await writeReport("intercept", startedAt, report);

  console.log(table(results));
  console.log("\nCPU microseconds per request (HTTP) and per round trip (rr), by process:");
  console.log(cpuTable(results));
  console.log();
  printTargets(targets);
  for (const e of wrkErrors) console.log(`note: ${e}`);
  console.log(`\nwritten: ${file} (${report.seconds} s)`);
  if (failure) {
    console.error(`bench_intercept: ${failure.message}`);
    return 1;
  }
  return 0;
}

if (import.meta.main) await runBench("bench_intercept", main);
