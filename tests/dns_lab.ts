/**
 * The DNS tests' own lab (scripts/lab.ts with an id of its own, so other engineers' tests on the main lab are not
 * disturbed), plus the child process of tests/dns_lab_child.ts run inside its workstation namespace.
 *
 * Two additions to the plain lab, both inside its workstation namespace: a /32 route to the cluster's dnsmasq over
 * the veth (so a forwarder there can stand for the manager's raw-DNS call, and the benchmark can query dnsmasq
 * directly), and tp's DNS address 198.18.3.53 on `lo` (the daemon will use an address routed to its TUN instead).
 */
import { down } from "../scripts/lab.ts";
import { ensureLab, exec, inNs, type LabConfig, labConfig, ROOT } from "./lab.ts";
import type { LoadOptions, LoadResult, ServeOptions } from "./dns_lab_child.ts";

export const TP_DNS = "198.18.3.53";
const CHILD = `${ROOT}/tests/dns_lab_child.ts`;

/** A lab id unique to this process (at most 6 characters), so two test runs do not share a lab. */
export function dnsLabId(): string {
  return "dn" + (Deno.pid % 36 ** 4).toString(36);
}

export async function upDnsLab(id = dnsLabId()): Promise<LabConfig> {
  const cfg = await ensureLab(labConfig(id));
  const ws = cfg.namespaces.workstation;
  for (
    const args of [
      ["route", "replace", `${cfg.clusterDns.ip}/32`, "via", cfg.veth.clusterIp],
      ["addr", "replace", `${TP_DNS}/32`, "dev", "lo"],
    ]
  ) {
    const r = await exec(["ip", "-n", ws, ...args]);
    if (r.code !== 0) throw new Error(`ip -n ${ws} ${args.join(" ")} failed: ${r.stderr.trim()}`);
  }
  return cfg;
}

export async function downDnsLab(cfg: LabConfig): Promise<void> {
  await down(cfg);
}

export function serveOptions(cfg: LabConfig, extra: Partial<ServeOptions> = {}): ServeOptions {
  return {
    dnsAddress: TP_DNS,
    port: 53,
    clusterDns: cfg.clusterDns.ip,
    clusterDomain: cfg.clusterDomain,
    namespace: "default",
    subnets: [...cfg.subnets.service, ...cfg.subnets.pod],
    stateDir: `${cfg.stateDir}/tp-state`,
    resolvConf: false,
    ...extra,
  };
}

export interface DnsChild {
  pid: number;
  ready: { upstreams: string[]; repaired: string | null };
  counters(): Promise<Record<string, number>>;
  /** Asks the child to quit (restoring what it changed) and returns its last report. */
  quit(): Promise<{ counters: Record<string, number>; restore: { action: string; message: string } | null }>;
  /** kill -9, as a crash. */
  crash(): Promise<void>;
}

/** Starts tp's resolver in the lab's workstation namespace and waits until it listens (bounded). */
export async function startDnsChild(cfg: LabConfig, options: ServeOptions): Promise<DnsChild> {
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      cfg.namespaces.workstation,
      Deno.execPath(),
      "run",
      "-A",
      CHILD,
      "serve",
      JSON.stringify(options),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const nextLine = async (ms: number): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + ms;
    while (!buffered.includes("\n")) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        reader.read(),
        new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), Math.max(1, deadline - Date.now()))),
      ]);
      clearTimeout(timer);
      if (r === null) throw new Error(`The DNS child (pid ${child.pid}) printed nothing within ${ms} ms`);
      if (r.done) throw new Error(`The DNS child (pid ${child.pid}) exited`);
      buffered += r.value;
    }
    const nl = buffered.indexOf("\n");
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    return JSON.parse(line);
  };
  const finish = async () => {
    await writer.close().catch(() => {});
    await reader.cancel().catch(() => {});
    await child.status;
  };
  let ready: Record<string, unknown>;
  try {
    ready = await nextLine(20_000);
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await finish();
    throw e;
  }
  return {
    pid: child.pid,
    ready: ready as unknown as DnsChild["ready"],
    async counters() {
      await writer.write(new TextEncoder().encode("counters\n"));
      return (await nextLine(5_000)).counters as Record<string, number>;
    },
    async quit() {
      await writer.write(new TextEncoder().encode("quit\n"));
      try {
        return await nextLine(10_000) as Awaited<ReturnType<DnsChild["quit"]>>;
      } finally {
        await finish();
      }
    },
    async crash() {
      Deno.kill(child.pid, "SIGKILL");
      await finish();
    },
  };
}

/** Runs the load generator in the lab's workstation namespace. */
export async function runLoad(cfg: LabConfig, options: LoadOptions): Promise<LoadResult> {
  const r = await inNs("ws", [Deno.execPath(), "run", "-A", CHILD, "load", JSON.stringify(options)], {
    timeoutMs: 120_000,
  }, cfg);
  if (r.code !== 0) throw new Error(`The load generator failed (exit ${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

/** Runs crash repair in the lab's workstation namespace. */
export async function runRepair(cfg: LabConfig, stateDir: string): Promise<string | null> {
  const r = await inNs("ws", [Deno.execPath(), "run", "-A", CHILD, "repair", JSON.stringify({ stateDir })], {}, cfg);
  if (r.code !== 0) throw new Error(`repair failed (exit ${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim()).message;
}

/**
 * `dig` in a lab namespace, reduced to what must match: the status line's rcode and the answer records, their TTLs
 * written as "TTL" (a cached answer's TTL has aged, as it should).
 */
export async function dig(
  cfg: LabConfig,
  node: "ws" | "cluster",
  server: string,
  args: string[],
): Promise<{ status: string; answers: string[]; ms: number }> {
  const r = await inNs(
    node,
    ["dig", `@${server}`, "+tries=1", "+timeout=5", "+noall", "+answer", "+comments", ...args],
    {},
    cfg,
  );
  const status = r.stdout.match(/status: (\w+)/)?.[1] ?? `no answer (exit ${r.code}): ${r.stdout}${r.stderr}`;
  const answers = r.stdout.split("\n").filter((l) => l.trim() && !l.startsWith(";")).map((l) =>
    l.split(/\s+/).map((f, i) => i === 1 && /^\d+$/.test(f) ? "TTL" : f).join(" ")
  );
  return { status, answers, ms: r.ms };
}
