/**
 * scripts/bench.ts's measures, each run over whichever path is up, from the lab's workstation namespace: iperf3 TCP
 * and UDP, wrk's new connections, request/response (back to back and after idle gaps), new connections after idle,
 * dnsperf, the idle CPU of a path's processes, memory per idle connection, the time to the first request, and the
 * iperf3 server of the bench's own that UDP goes to.
 */
import {
  CL,
  client,
  CONNECT_GAPS,
  DNS_NAME,
  DNSPERF_SECONDS,
  echo,
  HELD_CONNECTIONS,
  HTTP_PORT,
  IDLE_CPU_SECONDS,
  IDLE_GAPS,
  inWs,
  iperf,
  IPERF_PORT,
  IPERF_SECONDS,
  run,
  TCP_ECHO,
  UDP_IPERF_PORT,
  wanted,
  WS,
} from "./_bench_run.ts";
import { type Background, background, finish } from "./_bench_background.ts";
import { contextSwitches, cpuSeconds, rssKiB, switchesBetween } from "./_proc.ts";

/**
 * Figures by name: tcpUp1Gbps, udp500Mbps, udp500LossPct, httpConnPerSec, httpConn8PerSec, rrP50Us, rrIdle100P50Us,
 * connect200Ms, ttfb200Ms, dnsQps, daemonIdleCpuPct, ... (ROWS in _bench_report.ts lists them all).
 */
export type Measures = Record<string, number>;

/** What one path gave: its figures, what lies behind them, and what failed (a failed measure does not stop the rest). */
export interface PathResult {
  measures: Measures;
  details: Record<string, unknown>;
  errors: string[];
}

/** iperf3 TCP for IPERF_SECONDS, `streams` at once, upload (or download with `reverse`): what arrived, in Gbit/s. */
export async function iperfTcp(reverse: boolean, streams: number): Promise<{ gbps: number; detail: unknown }> {
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

/** iperf3 UDP upload for IPERF_SECONDS at `rate` offered (0: unlimited) to the bench's own server: goodput and loss. */
export async function iperfUdp(rate: string): Promise<{ mbps: number; lossPct: number; detail: unknown }> {
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

/** wrk for IPERF_SECONDS, `connections` clients, a new connection per request (`Connection: close`): requests/s. */
export async function wrk(connections: number): Promise<{ perSec: number; detail: unknown }> {
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

/** Request/response on one connection, 64 bytes with the TCP echo (scripts/bench_client.ts rr): p50 and p99. */
export async function rr(): Promise<{ p50: number; p99: number; detail: unknown }> {
  const r = await inWs(client("rr", echo.serviceIp, String(TCP_ECHO)), { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`rr client: ${r.stderr.trim()}`);
  const j = JSON.parse(r.stdout) as { p50Us: number; p99Us: number };
  return { p50: j.p50Us, p99: j.p99Us, detail: j };
}

export interface Quantiles {
  n: number;
  p50Us: number;
  p99Us: number;
  minUs: number;
  maxUs: number;
}

/** Request/response on one connection after each idle gap (scripts/bench_client.ts idle). */
export async function rrIdle(): Promise<Record<string, Quantiles>> {
  const r = await inWs(
    client("idle", echo.serviceIp, String(TCP_ECHO), "--gaps", IDLE_GAPS.join(",")),
    { timeoutMs: 90_000 },
  );
  if (r.code !== 0) throw new Error(`idle client: ${r.stderr.trim()}`);
  return (JSON.parse(r.stdout) as { gaps: Record<string, Quantiles> }).gaps;
}

/** New connections after each idle gap: connect() and first byte (scripts/bench_client.ts connect). */
export async function connectIdle(): Promise<Record<string, { connect: Quantiles; ttfb: Quantiles }>> {
  const r = await inWs(
    client("connect", echo.serviceIp, String(HTTP_PORT), "--gaps", CONNECT_GAPS.join(",")),
    { timeoutMs: 90_000 },
  );
  if (r.code !== 0) throw new Error(`connect client: ${r.stderr.trim()}`);
  return (JSON.parse(r.stdout) as { gaps: Record<string, { connect: Quantiles; ttfb: Quantiles }> }).gaps;
}

/** dnsperf, 4 clients, one name asked again and again, against `server` for DNSPERF_SECONDS. */
export async function dnsperf(server: string): Promise<{ qps: number; detail: Record<string, unknown> }> {
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
export async function measureIdleCpu(res: PathResult, sets: Record<string, () => number[]>): Promise<void> {
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
  // Context switches per thread, so that a thread that ends in between cannot make the count go down.
  const threads = () =>
    Object.fromEntries(
      Object.entries(sets).map(([k, pids]) => [k, new Map(pids().flatMap((p) => [...contextSwitches(p)]))]),
    );
  await new Promise((r) => setTimeout(r, 1000)); // what the last measure left (timers, closing connections) settles
  const c0 = sum(cpuSeconds), w0 = threads(), t0 = performance.now();
  await new Promise((r) => setTimeout(r, IDLE_CPU_SECONDS * 1000));
  const c1 = sum(cpuSeconds), w1 = threads(), wall = (performance.now() - t0) / 1000;
  const out: Record<string, number> = {};
  for (const k of Object.keys(c1)) {
    out[k] = (100 * (c1[k]! - c0[k]!)) / wall;
    out[`${k}WakeupsPerSec`] = switchesBetween(w0[k]!, w1[k]!) / wall;
  }
  return out;
}

/**
 * Memory per idle connection in steady state: `count` connections opened and closed once (the process's heap grows
 * to the size such a burst needs, and RSS does not give it back), then opened again and measured. The first
 * round's figure, which is mostly that one-time growth, is kept in the details.
 */
export async function steadyIdleMemory(
  pids: () => number[],
  notes: string[],
): Promise<{ perConn: number; detail: Record<string, unknown> }> {
  const first = await idleMemory(pids, notes);
  await new Promise((r) => setTimeout(r, 1000));
  const second = await idleMemory(pids, notes);
  return { perConn: second.perConn, detail: { ...second.detail, firstRoundKiBPerConn: first.perConn } };
}

/** Opens `count` idle connections to the TCP echo and returns the KiB per connection of `pids`' RSS. */
export async function idleMemory(
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
export async function firstRequestProber(): Promise<{ go: () => Promise<void>; result: () => Promise<number> }> {
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
export async function checkReachable(what: string): Promise<void> {
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

/** Starts the iperf3 server UDP goes to (bound to the iperf service address, port UDP_IPERF_PORT) and waits for it. */
export async function startUdpIperfServer(): Promise<Background> {
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
  return udpServer;
}
