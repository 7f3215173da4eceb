/**
 * A child process for the DNS lab tests and the benchmark, run inside the lab's workstation namespace
 * (`ip netns exec <id>-ws deno run -A tests/dns_lab_child.ts MODE JSON`). Modes:
 *
 * - `serve`: tp's resolver on a kernel socket at `dnsAddress:port`, the cluster forwarder sending to the cluster's
 *   dnsmasq over the veth (it stands for the manager's raw-DNS call), the upstream forwarder sending to the
 *   workstation's original nameservers; with `resolvConf`, /etc/resolv.conf is pointed at tp first (and restored on
 *   `quit`). Prints one JSON line when ready, then obeys stdin lines: `counters`, `quit`.
 * - `load`: `clients` concurrent UDP clients send `total` queries in all, one at a time each, no retries; prints a
 *   JSON summary (answered, lost, rcodes, latency percentiles).
 * - `repair`: what `tp connect`/`tp quit` do after a crash: `repairResolvConf(stateDir)`; prints its message.
 */
import dgram from "node:dgram";
import { Resolver } from "../net/dns/resolver.ts";
import { NameRouter } from "../net/dns/name_routing.ts";
import { nameserverForwarder } from "../cli/dns/forwarder.ts";
import { applyResolvConf, parseResolvConf, repairResolvConf, restoreResolvConf } from "../cli/dns/resolv_conf.ts";
import { serveDns } from "./dns_server.ts";

export interface ServeOptions {
  dnsAddress: string;
  port: number;
  clusterDns: string;
  clusterDomain: string;
  namespace: string;
  subnets: string[];
  stateDir: string;
  resolvConf: boolean;
  timeoutMs?: number;
  cache?: { minTtl?: number; maxEntries?: number };
}

export interface LoadOptions {
  server: string;
  port: number;
  clients: number;
  total: number;
  /** [name, type number] pairs, cycled through. */
  questions: [string, number][];
  timeoutMs: number;
  /** Give each query a unique label under this cluster domain instead (uncached NXDOMAIN lookups). */
  uniqueUnder?: string;
}

export interface LoadResult {
  sent: number;
  answered: number;
  lost: number;
  rcodes: Record<string, number>;
  elapsedMs: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
}

function encodeQuery(id: number, name: string, type: number): Uint8Array {
  const labels = name.split(".").filter(Boolean);
  const out = [id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
  for (const l of labels) out.push(l.length, ...new TextEncoder().encode(l));
  out.push(0, type >> 8, type & 0xff, 0, 1);
  return Uint8Array.from(out);
}

async function load(o: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  const rcodes: Record<string, number> = {};
  let sent = 0;
  let lost = 0;
  let next = 0;
  const t0 = performance.now();
  const client = async (c: number) => {
    const sock = dgram.createSocket(o.server.includes(":") ? "udp6" : "udp4");
    await new Promise<void>((resolve) => sock.bind(0, resolve));
    let waiting: ((m: Uint8Array | null) => void) | null = null;
    let expectId = -1;
    sock.on("message", (m: Uint8Array) => {
      if (waiting && m.length >= 12 && ((m[0]! << 8) | m[1]!) === expectId) {
        const w = waiting;
        waiting = null;
        w(new Uint8Array(m));
      }
    });
    try {
      for (let i = 0; i < o.total; i++) {
        const k = next++;
        if (k >= o.total) break;
        const [name, type] = o.uniqueUnder ? [`u${c}x${k}.${o.uniqueUnder}`, 1] : o.questions[k % o.questions.length]!;
        expectId = (k * 7 + c) & 0xffff;
        const q = encodeQuery(expectId, name, type);
        const started = performance.now();
        const answer = await new Promise<Uint8Array | null>((resolve) => {
          const timer = setTimeout(() => {
            waiting = null;
            resolve(null);
          }, o.timeoutMs);
          waiting = (m) => {
            clearTimeout(timer);
            resolve(m);
          };
          sent++;
          sock.send(q, o.port, o.server);
        });
        if (!answer) {
          lost++;
          continue;
        }
        latencies.push(performance.now() - started);
        const rcode = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN"][answer[3]! & 0xf] ?? String(answer[3]! & 0xf);
        rcodes[rcode] = (rcodes[rcode] ?? 0) + 1;
      }
    } finally {
      await new Promise<void>((resolve) => sock.close(() => resolve()));
    }
  };
  await Promise.all(Array.from({ length: o.clients }, (_, c) => client(c)));
  const elapsedMs = performance.now() - t0;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) =>
    latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]! : NaN;
  return {
    sent,
    answered: latencies.length,
    lost,
    rcodes,
    elapsedMs,
    perSecond: latencies.length / (elapsedMs / 1000),
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
  };
}

async function serve(o: ServeOptions): Promise<void> {
  let upstreams: string[];
  let repaired: string | null = null;
  const routing = {
    clusterDomain: o.clusterDomain,
    namespace: o.namespace,
    subnets: o.subnets,
  };
  const router = new NameRouter(routing);
  if (o.resolvConf) {
    const r = await applyResolvConf({ stateDir: o.stateDir }, {
      dnsAddress: o.dnsAddress,
      searchDomains: router.searchDomains(),
    });
    upstreams = r.upstreams;
    repaired = r.repaired;
  } else {
    upstreams = parseResolvConf(await Deno.readTextFile("/etc/resolv.conf")).nameservers;
  }
  const cluster = nameserverForwarder([{ ip: o.clusterDns }], { attemptTimeoutMs: o.timeoutMs ?? 4_000 });
  const upstream = nameserverForwarder(upstreams.map((ip) => ({ ip })));
  const resolver = new Resolver({
    routing: router,
    cluster,
    upstream,
    ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
    ...(o.cache ? { cache: o.cache } : {}),
  });
  const server = await serveDns(resolver, { hostname: o.dnsAddress, port: o.port });
  console.log(JSON.stringify({ ready: true, pid: Deno.pid, upstreams, repaired }));
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let buffered = "";
  for await (const chunk of lines) {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      const cmd = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (cmd === "counters") console.log(JSON.stringify({ counters: resolver.counters }));
      if (cmd === "quit") {
        resolver.close();
        await server.close();
        await cluster.close();
        await upstream.close();
        const restore = o.resolvConf ? await restoreResolvConf({ stateDir: o.stateDir }) : null;
        console.log(JSON.stringify({ counters: resolver.counters, restore }));
        return;
      }
    }
  }
}

if (import.meta.main) {
  const [mode, json] = Deno.args;
  const options = JSON.parse(json ?? "{}");
  if (mode === "serve") await serve(options as ServeOptions);
  else if (mode === "load") console.log(JSON.stringify(await load(options as LoadOptions)));
  else if (mode === "repair") console.log(JSON.stringify({ message: await repairResolvConf(options.stateDir) }));
  else throw new TypeError(`Unknown mode "${mode}": serve, load or repair`);
}
