/**
 * scripts/bench.ts's suite: every measure, in order, over the path that is up, each one's failure recorded rather
 * than stopping the rest; and what a measure costs the path's processes (their CPU and memory, tp's counters moved).
 */
import {
  connectIdle,
  dnsperf,
  iperfTcp,
  iperfUdp,
  type Measures,
  type PathResult,
  rr,
  rrIdle,
  wrk,
} from "./_bench_measures.ts";
import {
  DNS_NAME,
  inWs,
  log,
  type PathName,
  UDP_RATES,
  wanted,
  WRK_CONNECTIONS,
  WRK_FEW_CONNECTIONS,
} from "./_bench_run.ts";
import { round, type Teardown } from "./_lab_fixture.ts";
import { cpuSeconds, rssKiB } from "./_proc.ts";

/** What a measure costs: CPU seconds of the given processes while it runs, and the daemon's counters moved. */
export interface Observer {
  before(): Promise<void>;
  after(): Promise<Record<string, unknown>>;
}

/** Runs every measure of the suite over the path that is up, recording each failure rather than stopping. */
export async function suite(
  name: PathName,
  res: PathResult,
  observer: Observer | null,
  opts: {
    /** The run's teardown: once it has begun, no step starts. */
    ending: Teardown;
    udp: boolean;
    /** The DNS server dnsperf asks, or null when the path carries no DNS of its own. */
    dns: string | null;
    wrap?: (key: string, f: () => Promise<void>) => Promise<void>;
  },
): Promise<void> {
  const m = res.measures;
  const step = async (key: string, f: () => Promise<void>) => {
    if (opts.ending.begun) return; // interrupted: the lab is going down
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

/** CPU seconds of named process sets across a measure, and (for tp) the daemon's counters moved. */
export function cpuObserver(sets: Record<string, () => number[]>, status: (() => Promise<unknown>) | null): Observer {
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
