/**
 * DNS benchmark (issue 7): lookups per second and p50/p99 latency through tp's resolver, cached and uncached,
 * beside querying the cluster's dnsmasq directly over the veth, in the same run, on a lab of its own.
 *
 *   ./scripts/deno run -A scripts/bench_dns.ts [--lab-id ID] [--clients 4] [--queries 4000]
 *
 * Needs root (it brings up a lab with its own id and tears it down). tp's resolver runs first as in the tests
 * (tests/dns_lab_child.ts): on a kernel socket in the workstation namespace, its cluster forwarder sending to the
 * cluster's dnsmasq over the veth; the cached server raises TTLs to 30 s (`minTtl`, like dnsmasq's and unbound's
 * cache-min-ttl), the uncached server has its cache off. Then the product: `tp connect` on the same lab, the same
 * load through the TUN to tp's DNS address, cluster names forwarded by the traffic-manager.
 */
import { downDnsLab, runLoad, serveOptions, startDnsChild, TP_DNS, upDnsLab } from "../tests/dns_lab.ts";
import type { LoadResult } from "../tests/dns_lab_child.ts";
import { LAB } from "../tests/lab.ts";
import { reexecOnLab } from "./_lab_fixture.ts";

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  const v = i >= 0 ? Number(Deno.args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v <= 0 || v > 100_000) throw new RangeError(`--${name} must be 1..100000, got ${v}`);
  return v;
}

const clients = arg("clients", 4);
const total = arg("queries", 4000);
if (Deno.uid() !== 0) throw new Error("bench_dns needs root (it brings up a lab of network namespaces)");

// One lab for everything below, the tp part included (its helpers read TP_LAB_ID when first imported): a lab of
// its own unless --lab-id or TP_LAB_ID names one.
await reexecOnLab("db" + (Deno.pid % 36 ** 4).toString(36));
const cfg = await upDnsLab(LAB.id);
const d = cfg.clusterDomain;
const positive: [string, number][] = [
  [`echo.default.svc.${d}`, 1],
  [`echo.default.svc.${d}`, 28],
  [`iperf.default.svc.${d}`, 1],
  [`_http._tcp.echo.default.svc.${d}`, 33],
];
const rows: [string, LoadResult][] = [];
const run = (server: string, port: number, extra: { uniqueUnder?: string } = {}) =>
  runLoad(cfg, { server, port, clients, total, timeoutMs: 2_000, questions: positive, ...extra });
try {
  const cached = await startDnsChild(cfg, serveOptions(cfg, { port: 53, cache: { minTtl: 30 } }));
  const uncached = await startDnsChild(cfg, serveOptions(cfg, { port: 5300, cache: { maxEntries: 0 } }));
  try {
    // Warm the cached server and the load generator's code paths; not reported.
    await run(TP_DNS, 53);
    rows.push(["dnsmasq direct, cluster names", await run(cfg.clusterDns.ip, 53)]);
    rows.push(["tp cached, cluster names", await run(TP_DNS, 53)]);
    rows.push(["tp uncached (cache off), cluster names", await run(TP_DNS, 5300)]);
    rows.push([
      "dnsmasq direct, unique names (NXDOMAIN)",
      await run(cfg.clusterDns.ip, 53, { uniqueUnder: `default.svc.${d}` }),
    ]);
    rows.push(["tp, unique names (every one a miss)", await run(TP_DNS, 53, { uniqueUnder: `default.svc.${d}` })]);
  } finally {
    await cached.quit();
    await uncached.quit();
  }
  // The product itself: `tp connect` on this lab, queries through the TUN to tp's DNS address, cluster names asked of
  // the manager (which asks dnsmasq), cached for the lab's TTL (5 s, like CoreDNS).
  const fx = await import("../tests/connect_fixture.ts");
  const manager = await fx.startLabManager();
  try {
    // The lab's direct route to dnsmasq (for the rows above) overlaps the service subnet: allow it.
    const c = await fx.tp([
      "connect",
      "--manager-url",
      fx.MANAGER_URL,
      "--allow-conflicting-subnets",
      `${cfg.clusterDns.ip}/32`,
    ]);
    if (c.code !== 0) throw new Error(`tp connect failed: ${c.stderr}`);
    const status = JSON.parse((await fx.tp(["status", "-o", "json"])).stdout);
    const tpDns = status.dns.address as string;
    await run(tpDns, 53);
    rows.push(["tp daemon via the TUN, cluster names", await run(tpDns, 53)]);
    rows.push(["tp daemon via the TUN, unique names", await run(tpDns, 53, { uniqueUnder: `default.svc.${d}` })]);
  } finally {
    await fx.forceQuit();
    await manager.stop();
  }
} finally {
  await downDnsLab(cfg);
}

console.log(`DNS lookups over UDP, ${clients} concurrent clients, ${total} queries per row, one at a time per client`);
console.log(
  `${"".padEnd(42)} ${"lookups/s".padStart(10)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"lost".padStart(5)}`,
);
for (const [name, r] of rows) {
  console.log(
    `${name.padEnd(42)} ${r.perSecond.toFixed(0).padStart(10)} ${r.p50Ms.toFixed(3).padStart(8)} ${
      r.p99Ms.toFixed(3).padStart(8)
    } ${String(r.lost).padStart(5)}`,
  );
}
