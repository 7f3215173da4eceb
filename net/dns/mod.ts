/**
 * tp's DNS logic, with no OS calls: which names go to the cluster (`name_routing.ts`), the resolver with its cache
 * (`resolver.ts`, `cache.ts`), wire helpers (`message.ts`, `rewrite.ts`) and DNS-over-TCP framing
 * (`tcp_framing.ts`). The OS side (resolv.conf, systemd-resolved, sockets to nameservers) is in `cli/dns/`.
 *
 * How the daemon wires it (DNS_IP is tp's DNS address, routed to the TUN device):
 *
 * ```ts
 * const note = await repairResolvConf(stateDir); // a crashed tp's resolv.conf comes back first
 * if (note) log(note);
 * const router = new NameRouter({
 *   clusterDomain: "cluster.local", namespace: settings.namespace, namespaces: clusterInfo.namespaces,
 *   subnets: [...clusterInfo.serviceSubnets, ...clusterInfo.podSubnets],
 * });
 * const resolved = await detectResolved();
 * const upstreams = resolved.running
 *   ? await resolvedUpstreams()
 *   : (await applyResolvConf({ stateDir }, { dnsAddress: DNS_IP, searchDomains: router.searchDomains() })).upstreams;
 * if (resolved.running) {
 *   await applyResolved({ link: tun.name, dnsAddress: DNS_IP, searchDomains: router.searchDomains(),
 *     routingDomains: router.routingDomains() }, resolved.resolvectl!);
 * }
 * const upstream = nameserverForwarder(upstreams.map((ip) => ({ ip })));
 * const resolver = new Resolver({ routing: router, cluster: (q, signal) => session.dns(q, signal), upstream });
 * // UDP to DNS_IP:53 (a router hook): answer, or drop when resolve() gives null (it counted the drop).
 * const answer = await resolver.resolve(payload, performance.now(), { transport: "udp" });
 * // TCP to DNS_IP:53 (terminated locally): deframe, resolve with { transport: "tcp" }, write frameTcp(answer).
 * // tp status: { dns: { ...resolver.counters } }
 * // quit: resolver.close(); await upstream.close(); then revertResolved(tun.name) or restoreResolvConf({ stateDir }).
 * ```
 */
export { type CacheKind, DnsCache, type DnsCacheOptions } from "./cache.ts";
export {
  encodeName,
  type MessageInfo,
  Rcode,
  readName,
  RrType,
  scanMessage,
  truncateAnswer,
  udpLimit,
} from "./message.ts";
export {
  NameRouter,
  type NameRoutingOptions,
  reverseNameToAddress,
  reverseZones,
  type Route,
  type RouteReason,
} from "./name_routing.ts";
export { type DnsCounters, type Forwarder, type ResolveOptions, Resolver, type ResolverOptions } from "./resolver.ts";
export { frameTcp, TcpDeframer } from "./tcp_framing.ts";
