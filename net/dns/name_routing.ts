/**
 * Which names go to the cluster's DNS, and under which name.
 *
 * Rules, first match wins (names are compared lower-case, without the trailing dot):
 *  1. an exclude suffix (default `localhost`)                         -> upstream, unchanged
 *  2. a reverse name (`in-addr.arpa`, `ip6.arpa`) of one address
 *     inside the cluster's subnets                                     -> cluster, unchanged (PTR)
 *     any other reverse name                                           -> upstream
 *  3. the cluster domain itself or a name under it                     -> cluster, unchanged
 *  4. an include suffix                                                -> cluster, unchanged
 *  5. a name whose last label is `svc` (`echo.default.svc`)            -> cluster, as `<name>.<domain>`
 *  6. two or more labels, the last one a known namespace that is not
 *     a public top-level domain (`echo.default`, `web-0.nginx.team`)   -> cluster, as `<name>.svc.<domain>`
 *  7. one label (`echo`)                                               -> cluster, as `<name>.<ns>.svc.<domain>`
 *  8. everything else                                                  -> upstream, unchanged
 *
 * Rule 6 needs the namespace list: `echo.dev` and `example.dev` look alike, and only the cluster knows that `dev` is
 * one of its namespaces. The list defaults to the connected namespace; the daemon passes the manager's list.
 * A rewritten name that the cluster answers NXDOMAIN for is asked upstream unchanged (the resolver's
 * `fallbackToUpstream`). A namespace named like a public top-level domain (`com`, `dev`: `PUBLIC_SUFFIXES`) is not
 * matched by rule 6 at all, so no `.com` name is ever asked of the cluster, which could answer it falsely: such a
 * namespace's services are reached by their full cluster form (`api.com.svc.cluster.local`, or `api.com.svc`) and by
 * single labels when it is the connected one. An include suffix (configuration) still sends a public suffix.
 *
 * How this meets the search list: tp puts `<ns>.svc.<domain>`, `svc.<domain>`, `<domain>` first in the search list.
 * With glibc's default `ndots:1`, `echo` (no dot) is expanded by the resolver library, so tp sees
 * `echo.<ns>.svc.<domain>` (rule 3) and answers on the first try; `echo.default` (one dot) is asked as it is first, so
 * tp sees `echo.default` (rule 6) and rewrites it. Both reach the same cluster record. A non-cluster name such as
 * `example.com` is asked as it is first (one dot) and goes upstream on the first try, so the extra search entries
 * cost nothing for it; single-label non-cluster names (`printer`) go through the cluster first (NXDOMAIN), then the
 * original search domains (`printer.home.test`, upstream). tp never changes `ndots`.
 */
import ipaddr from "ipaddr.js";

/**
 * Top-level domains never sent to the cluster by a namespace named like them: Telepresence's default exclusions
 * (com, io, net, org, ru) and the other common generic and country TLDs a namespace might be called.
 */
export const PUBLIC_SUFFIXES: readonly string[] = [
  "com",
  "net",
  "org",
  "io",
  "ru",
  "dev",
  "app",
  "ai",
  "co",
  "me",
  "info",
  "biz",
  "edu",
  "gov",
  "mil",
  "int",
  "xyz",
  "cloud",
  "tech",
  "online",
  "site",
  "us",
  "uk",
  "de",
  "fr",
  "nl",
  "eu",
  "cn",
  "jp",
  "in",
  "br",
  "ca",
  "au",
  "tv",
  "cc",
  "ch",
  "se",
  "no",
  "es",
  "it",
  "pl",
  "be",
  "at",
  "dk",
  "fi",
  "kr",
  "tw",
  "sg",
  "nz",
  "za",
  "mx",
];

export interface NameRoutingOptions {
  /** The cluster's DNS domain, e.g. `cluster.local`. */
  clusterDomain: string;
  /** The connected namespace: single-label names are looked up in it. */
  namespace: string;
  /** Namespaces that `<svc>.<ns>` may name (default: just `namespace`). */
  namespaces?: readonly string[];
  /** Extra suffixes sent to the cluster unchanged. */
  includeSuffixes?: readonly string[];
  /** Top-level domains a namespace's short form (rule 6) may not take. Default `PUBLIC_SUFFIXES`. */
  publicSuffixes?: readonly string[];
  /** Suffixes never sent to the cluster; they win over every other rule. Default `["localhost"]`. */
  excludeSuffixes?: readonly string[];
  /** The cluster's subnets (CIDRs, IPv4 and IPv6): PTR names for addresses inside go to the cluster. */
  subnets?: readonly string[];
}

export type RouteReason =
  | "exclude"
  | "reverse-cluster"
  | "reverse-other"
  | "cluster-domain"
  | "include"
  | "svc-suffix"
  | "namespace"
  | "single-label"
  | "other";

export type Route =
  | { to: "cluster"; reason: RouteReason; /** The name to ask the cluster. */ name: string; rewritten: boolean }
  | { to: "upstream"; reason: RouteReason };

function normalise(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

function hasSuffix(name: string, suffix: string): boolean {
  return suffix === "" || name === suffix || name.endsWith("." + suffix);
}

export class NameRouter {
  readonly clusterDomain: string;
  readonly namespace: string;
  #namespaces: Set<string>;
  #include: string[];
  #exclude: string[];
  #public: Set<string>;
  #subnets: [ipaddr.IPv4 | ipaddr.IPv6, number][];

  constructor(options: NameRoutingOptions) {
    this.clusterDomain = normalise(options.clusterDomain);
    this.namespace = normalise(options.namespace);
    if (!this.clusterDomain || !this.namespace || this.namespace.includes(".")) {
      throw new TypeError(
        `Cannot route DNS names with cluster domain "${options.clusterDomain}" and namespace "${options.namespace}"`,
      );
    }
    this.#namespaces = new Set([this.namespace, ...(options.namespaces ?? []).map(normalise)]);
    this.#include = (options.includeSuffixes ?? []).map(normalise);
    this.#exclude = (options.excludeSuffixes ?? ["localhost"]).map(normalise);
    this.#public = new Set((options.publicSuffixes ?? PUBLIC_SUFFIXES).map(normalise));
    if (this.#public.has(this.clusterDomain) && !this.#include.includes(this.clusterDomain)) {
      throw new TypeError(
        `Cannot send every name under the public domain "${this.clusterDomain}" to the cluster: its DNS domain ` +
          `must not be a public top-level domain`,
      );
    }
    this.#subnets = (options.subnets ?? []).map((cidr) => {
      try {
        // ipaddr.js also takes "10.0.0/8" (inet_aton forms); a subnet here must be written out in full.
        if (!cidr.includes(":") && !/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(cidr)) throw new Error();
        return ipaddr.parseCIDR(cidr);
      } catch {
        throw new TypeError(`Cannot parse CIDR "${cidr}"`);
      }
    });
  }

  /** The route for a name (normalised or not: case and a trailing dot do not matter). */
  route(qname: string): Route {
    const name = normalise(qname);
    if (name === "") return { to: "upstream", reason: "other" };
    if (this.#exclude.some((s) => hasSuffix(name, s))) return { to: "upstream", reason: "exclude" };
    if (hasSuffix(name, "in-addr.arpa") || hasSuffix(name, "ip6.arpa")) {
      const addr = reverseNameToAddress(name);
      if (addr && this.#inSubnets(addr)) return { to: "cluster", reason: "reverse-cluster", name, rewritten: false };
      return { to: "upstream", reason: "reverse-other" };
    }
    if (hasSuffix(name, this.clusterDomain)) return { to: "cluster", reason: "cluster-domain", name, rewritten: false };
    if (this.#include.some((s) => hasSuffix(name, s))) {
      return { to: "cluster", reason: "include", name, rewritten: false };
    }
    const labels = name.split(".");
    const last = labels[labels.length - 1]!;
    if (labels.length >= 2 && last === "svc") {
      return { to: "cluster", reason: "svc-suffix", name: `${name}.${this.clusterDomain}`, rewritten: true };
    }
    if (labels.length >= 2 && this.#namespaces.has(last) && !this.#public.has(last)) {
      return { to: "cluster", reason: "namespace", name: `${name}.svc.${this.clusterDomain}`, rewritten: true };
    }
    if (labels.length === 1) {
      return {
        to: "cluster",
        reason: "single-label",
        name: `${name}.${this.namespace}.svc.${this.clusterDomain}`,
        rewritten: true,
      };
    }
    return { to: "upstream", reason: "other" };
  }

  /** The search list tp puts ahead of the original one: `<ns>.svc.<domain>`, `svc.<domain>`, `<domain>`. */
  searchDomains(): string[] {
    return [`${this.namespace}.svc.${this.clusterDomain}`, `svc.${this.clusterDomain}`, this.clusterDomain];
  }

  /**
   * Routing domains for a split-DNS resolver (systemd-resolved's `~domain`): the cluster domain, each namespace,
   * `svc`, the include suffixes and the reverse zones of the subnets.
   */
  routingDomains(): string[] {
    const out = [
      this.clusterDomain,
      ...[...this.#namespaces].filter((n) => !this.#public.has(n)),
      "svc",
      ...this.#include,
    ];
    for (const [addr, bits] of this.#subnets) out.push(...reverseZones(addr, bits));
    return [...new Set(out)];
  }

  #inSubnets(addr: ipaddr.IPv4 | ipaddr.IPv6): boolean {
    return this.#subnets.some(([net, bits]) => net.kind() === addr.kind() && addr.match(net, bits));
  }
}

/** `10.0.19.198.in-addr.arpa` -> 198.19.0.10; 32 nibbles under `ip6.arpa` -> an IPv6 address; else null. */
export function reverseNameToAddress(name: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  const labels = normalise(name).split(".");
  if (labels.length === 6 && labels[4] === "in-addr" && labels[5] === "arpa") {
    const octets = labels.slice(0, 4).reverse();
    if (!octets.every((o) => /^(0|[1-9]\d{0,2})$/.test(o) && Number(o) <= 255)) return null;
    return ipaddr.IPv4.parse(octets.join("."));
  }
  if (labels.length === 34 && labels[32] === "ip6" && labels[33] === "arpa") {
    const nibbles = labels.slice(0, 32).reverse();
    if (!nibbles.every((n) => /^[0-9a-f]$/.test(n))) return null;
    const groups: string[] = [];
    for (let i = 0; i < 32; i += 4) groups.push(nibbles.slice(i, i + 4).join(""));
    return ipaddr.IPv6.parse(groups.join(":"));
  }
  return null;
}

/**
 * The reverse zones covering a subnet, at label boundaries (RFC 2317 style splitting is not needed for routing):
 * 198.19.0.0/24 -> `0.19.198.in-addr.arpa`; 198.19.128.0/20 -> the 16 zones `128..143.19.198.in-addr.arpa`.
 * A prefix between boundaries gives at most 128 (IPv4) or 8 (IPv6) zones.
 */
export function reverseZones(addr: ipaddr.IPv4 | ipaddr.IPv6, bits: number): string[] {
  const v4 = addr.kind() === "ipv4";
  const unit = v4 ? 8 : 4;
  const digits = v4
    ? (addr as ipaddr.IPv4).octets.map(String)
    : (addr as ipaddr.IPv6).toNormalizedString().split(":").flatMap((g) => g.padStart(4, "0").split(""));
  const suffix = v4 ? "in-addr.arpa" : "ip6.arpa";
  const whole = Math.floor(bits / unit);
  const spare = bits - whole * unit;
  if (spare === 0) {
    return [[...digits.slice(0, whole).reverse(), suffix].join(".")];
  }
  const out: string[] = [];
  const base = v4 ? Number(digits[whole]) : parseInt(digits[whole]!, 16);
  const count = 1 << (unit - spare);
  const start = base & ~(count - 1);
  const parent = digits.slice(0, whole).reverse();
  for (let i = 0; i < count; i++) {
    const d = v4 ? String(start + i) : (start + i).toString(16);
    out.push([d, ...parent, suffix].join("."));
  }
  return out;
}
