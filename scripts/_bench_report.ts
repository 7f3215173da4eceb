/**
 * scripts/bench.ts's report: the table's rows (one a measure: kernel, sshuttle, tp and tp's ratios to both), the
 * targets tp is held to, and what the JSON report records about the machine and the run's settings.
 */
import {
  CAPACITY_CONNECTIONS,
  CONNECT_GAPS,
  DNS_NAME,
  DNSPERF_SECONDS,
  HELD_CONNECTIONS,
  IDLE_CPU_SECONDS,
  IDLE_GAPS,
  IPERF_SECONDS,
  type PathName,
  run,
  UDP_RATES,
  WRK_CONNECTIONS,
  WRK_FEW_CONNECTIONS,
} from "./_bench_run.ts";
import type { PathResult } from "./_bench_measures.ts";
import type { Target } from "./_lab_fixture.ts";

/** A line of the table: the measure's key in PathResult.measures, how it is shown, and which way is better. */
interface Row {
  key: string;
  label: string;
  unit: string;
  better: "higher" | "lower";
  digits: number;
}

/** The table's lines, in order: every figure a path can give. */
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

/** tp's targets, each met or not (or not measured) by the figures of this run. */
export function targets(r: Partial<Record<PathName, PathResult>>): Target[] {
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

/** The table of every measure for each path and tp's ratios to the kernel and to sshuttle. */
export function table(r: Partial<Record<PathName, PathResult>>): string {
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

/** The machine the run measured on, and the versions of the tools it ran (sshuttle's only when it ran). */
export async function machine(paths: PathName[]): Promise<Record<string, unknown>> {
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

/** How the run measured, as the JSON report records it. */
export function settings(): Record<string, unknown> {
  return {
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
  };
}
