/**
 * The daemon's DNS: an address routed to tp's device answers queries (UDP and TCP, terminated by the router, never
 * tunneled); cluster names go to the traffic-manager's raw-DNS call, every other name to the machine's original
 * nameservers. The system is pointed at it through systemd-resolved when that runs, else /etc/resolv.conf (rewritten
 * in place and restored byte for byte on quit; after a crash the next tp restores it).
 */
import { type Cidr, formatAddress, lastAddress, parseCidr } from "../../net/cidr.ts";
import { frameTcp, NameRouter, Resolver, TcpDeframer } from "../../net/dns/mod.ts";
import type { Flow, TcpSocket, UdpFlow } from "../../net/router/owner.ts";
import {
  applyResolvConf,
  configureResolved,
  detectResolved,
  repairResolvConf,
  type ResolvedLink,
  resolvedUpstreams,
  restoreResolvConf,
} from "../dns/mod.ts";
import { type ResolvConfGuard, restoreCommand, startResolvConfGuard } from "../dns/resolv_guard.ts";
import { type FollowStatus, ResolvConfFollower } from "../dns/resolv_conf_follow.ts";
import { Upstreams } from "./upstreams.ts";
import { checkResolvConf, checkResolvedLink, type ResolverCheck } from "../dns/system_resolver.ts";
import type { ClusterInfo } from "../../proto/mod.ts";

export const DNS_PORT = 53;

/**
 * tp's DNS address: the last address of the first IPv4 service subnet (else the first routed block). Kubernetes never
 * allocates a service CIDR's broadcast address, so it collides with no service, and it is routed to tp's device.
 */
export function dnsAddress(serviceSubnets: readonly string[], routes: readonly Cidr[]): string {
  const svc = serviceSubnets.map((s) => parseCidr(s, { loose: true }));
  const pick = svc.find((c) => c.family === 4 && c.prefix <= 30) ??
    svc.find((c) => c.family === 6 && c.prefix <= 126) ??
    routes.find((c) => c.prefix <= (c.family === 4 ? 30 : 126));
  if (!pick) throw new Error("no subnet is large enough to hold tp's DNS address");
  return formatAddress(pick.family, lastAddress(pick));
}

export interface DaemonDnsOptions {
  stateDir: string;
  namespace: string;
  clusterInfo: ClusterInfo;
  routes: readonly Cidr[];
  device: string;
  /** The manager's raw-DNS call. */
  cluster: (query: Uint8Array, signal: AbortSignal) => Promise<Uint8Array>;
  log: (line: string, level?: "info" | "warn") => void;
  /**
   * The argv that runs tp (selfArgv()). With it, in resolv.conf mode, a guard process puts the original resolv.conf
   * back the moment this process dies (cli/dns/resolv_guard.ts).
   */
  selfArgv?: readonly string[];
}

export class DaemonDns {
  readonly address: string;
  readonly mode: "resolv.conf" | "systemd-resolved";
  readonly searchDomains: string[];
  readonly #resolver: Resolver;
  readonly #upstreams: Upstreams;
  readonly #stateDir: string;
  readonly #device: string;
  readonly #resolvedLink: ResolvedLink | null;
  readonly #guard: ResolvConfGuard | null;
  readonly #resolvectl: string | null;
  #follower: ResolvConfFollower | null = null;

  private constructor(init: {
    address: string;
    mode: "resolv.conf" | "systemd-resolved";
    searchDomains: string[];
    resolver: Resolver;
    upstreams: Upstreams;
    stateDir: string;
    device: string;
    resolvedLink: ResolvedLink | null;
    guard: ResolvConfGuard | null;
    resolvectl: string | null;
  }) {
    this.address = init.address;
    this.mode = init.mode;
    this.searchDomains = init.searchDomains;
    this.#resolver = init.resolver;
    this.#upstreams = init.upstreams;
    this.#stateDir = init.stateDir;
    this.#device = init.device;
    this.#resolvedLink = init.resolvedLink;
    this.#guard = init.guard;
    this.#resolvectl = init.resolvectl;
  }

  /** Points the system at tp's DNS address. Call once the router serves it. */
  static async start(o: DaemonDnsOptions): Promise<DaemonDns> {
    const info = o.clusterInfo;
    const address = dnsAddress(info.serviceSubnets, o.routes);
    const names = new NameRouter({
      clusterDomain: info.clusterDomain || "cluster.local",
      namespace: o.namespace,
      namespaces: [o.namespace],
      subnets: [...info.serviceSubnets, ...info.podSubnets],
    });
    const searchDomains = names.searchDomains();
    const resolved = await detectResolved();
    let upstreams: string[];
    let mode: "resolv.conf" | "systemd-resolved";
    let resolvedLink: ResolvedLink | null = null;
    let guard: ResolvConfGuard | null = null;
    if (resolved.running) {
      mode = "systemd-resolved";
      upstreams = await resolvedUpstreams();
      // D-Bus first (org.freedesktop.resolve1), resolvectl when the bus cannot be reached.
      resolvedLink = await configureResolved({
        link: o.device,
        dnsAddress: address,
        searchDomains,
        routingDomains: names.routingDomains(),
      }, { ...(resolved.resolvectl ? { resolvectl: resolved.resolvectl } : {}) });
      o.log(
        `systemd-resolved: ${o.device} configured through ${resolvedLink.via}` +
          (resolvedLink.note ? ` (${resolvedLink.note})` : ""),
      );
    } else {
      mode = "resolv.conf";
      o.log(`DNS through /etc/resolv.conf, not systemd-resolved: ${resolved.reason}`);
      guard = startGuard(o);
      let r;
      try {
        r = await applyResolvConf({ stateDir: o.stateDir }, { dnsAddress: address, searchDomains });
      } catch (e) {
        await guard?.disarm();
        throw e;
      }
      if (r.repaired) o.log(r.repaired);
      upstreams = r.upstreams;
    }
    // The original nameservers answer every name that is not the cluster's. With none (a machine with no DNS),
    // those names get SERVFAIL.
    const upstreamSet = new Upstreams(upstreams, { exclude: address });
    const resolver = new Resolver({ routing: names, cluster: o.cluster, upstream: upstreamSet.forward });
    const dns = new DaemonDns({
      address,
      mode,
      searchDomains,
      resolver,
      upstreams: upstreamSet,
      stateDir: o.stateDir,
      device: o.device,
      resolvedLink,
      guard,
      resolvectl: resolved.resolvectl,
    });
    if (mode === "resolv.conf") dns.#follow(o);
    return dns;
  }

  /** The original nameservers tp forwards other names to (the newest, when the network changed). */
  get upstreams(): string[] {
    return this.#upstreams.list;
  }

  /** Watches resolv.conf, to follow the network when another program rewrites it (cli/dns/resolv_conf_follow.ts). */
  #follow(o: DaemonDnsOptions): void {
    try {
      this.#follower = ResolvConfFollower.start({
        stateDir: o.stateDir,
        dnsAddress: this.address,
        searchDomains: this.searchDomains,
        log: o.log,
        onNewOriginal: (nameservers) => {
          // A new network: its nameservers answer other names now, and what the old ones said is forgotten.
          if (this.#upstreams.set(nameservers)) this.#resolver.cache.clear();
        },
      });
    } catch (e) {
      o.log(
        `cannot watch resolv.conf (${(e as Error).message}): if another program rewrites it, tp will not follow`,
        "warn",
      );
    }
  }

  /** Whether a connection or flow is addressed to tp's DNS server. */
  handles(flow: Flow): boolean {
    return flow.dstPort === DNS_PORT && flow.dst === this.address;
  }

  /** Answers the queries of one UDP flow (a client socket), one datagram each. */
  serveUdp(flow: UdpFlow): void {
    flow.onDatagram = (query) => {
      const q = query.slice();
      this.#resolver.resolve(q, performance.now(), { transport: "udp" }).then((a) => a && flow.send(a), () => {});
    };
    flow.accept();
  }

  /** Answers the queries of one TCP connection (RFC 7766: length-prefixed messages, answered in any order). */
  serveTcp(sock: TcpSocket): void {
    const deframer = new TcpDeframer();
    let closed = false;
    const pending: Uint8Array[] = [];
    const flush = () => {
      while (pending.length && !closed) {
        const head = pending[0]!;
        const n = sock.write(head);
        if (n < head.length) {
          pending[0] = head.subarray(n);
          return;
        }
        pending.shift();
      }
    };
    sock.onData = (data) => {
      for (const q of deframer.push(data)) {
        this.#resolver.resolve(q.slice(), performance.now(), { transport: "tcp" }).then((a) => {
          if (!a || closed) return;
          pending.push(frameTcp(a));
          flush();
        }, () => {});
      }
      if (deframer.broken) sock.abort();
      return true;
    };
    sock.onWritable = flush;
    sock.onEnd = () => sock.end();
    sock.onReset = () => (closed = true);
    sock.onClose = () => (closed = true);
    sock.accept();
  }

  status(): Record<string, unknown> {
    return {
      address: this.address,
      mode: this.mode,
      upstreams: this.upstreams,
      searchDomains: this.searchDomains,
      ...(this.#resolvedLink ? { resolvedVia: this.#resolvedLink.via } : {}),
      ...(this.#guard ? { guardPid: this.#guard.pid } : {}),
      ...(this.#follower ? { follow: this.#follower.status() satisfies FollowStatus } : {}),
      ...this.#resolver.counters,
    };
  }

  /**
   * Whether the system's resolver points at tp right now: resolv.conf as it is, or resolved's settings for tp's
   * link, asked the way tp configured it.
   */
  systemResolver(): Promise<ResolverCheck> {
    if (this.mode === "resolv.conf") return checkResolvConf("/etc/resolv.conf", this.address);
    const byResolvectl = this.#resolvedLink?.via === "resolvectl";
    return checkResolvedLink(this.#device, this.address, byResolvectl ? { resolvectl: this.#resolvectl } : {});
  }

  /** Restores the system's DNS settings and ends the resolver. */
  async stop(): Promise<string> {
    await this.#follower?.close();
    this.#resolver.close();
    await this.#upstreams.close();
    if (this.mode === "systemd-resolved") {
      await this.#resolvedLink?.revert();
      return `reverted systemd-resolved's settings for ${this.#device} (through ${this.#resolvedLink?.via})`;
    }
    const restored = (await restoreResolvConf({ stateDir: this.#stateDir })).message;
    await this.#guard?.disarm();
    return restored;
  }
}

/** Starts the resolv.conf guard, or says why there is none (the repair at the next start still runs). */
function startGuard(o: DaemonDnsOptions): ResolvConfGuard | null {
  if (!o.selfArgv) return null;
  try {
    return startResolvConfGuard(restoreCommand(o.selfArgv, o.stateDir, Deno.pid));
  } catch (e) {
    o.log(
      `cannot start the DNS guard (${(e as Error).message}): if tp dies, resolv.conf is restored only by the ` +
        `next tp connect or tp quit`,
      "warn",
    );
    return null;
  }
}

/** After a crash: puts back DNS settings a dead daemon left; the message says what, or null. */
export function repairDns(stateDir: string): Promise<string | null> {
  return repairResolvConf(stateDir);
}
