/**
 * tp's DNS logic, with no OS calls: which names go to the cluster (`name_routing.ts`), the resolver with its cache
 * (`resolver.ts`, `cache.ts`), wire helpers (`message.ts`, `rewrite.ts`) and DNS-over-TCP framing
 * (`tcp_framing.ts`). The OS side (resolv.conf, systemd-resolved, sockets to nameservers) is in `cli/dns/`.
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
