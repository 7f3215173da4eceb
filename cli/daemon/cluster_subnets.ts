/**
 * The cluster's word on what to route is checked before tp routes it: the manager (or whoever answers as it) names
 * the subnets, and a root daemon that routed them unchecked would let a cluster take this machine's default route,
 * its connection to the manager itself, or any public address. Each announced subnet is refused when it
 *
 * - is a default route (prefix 0);
 * - covers the address tp reaches the manager or the API server at (the tunnel would route into itself);
 * - holds public addresses, unless an --also-proxy CIDR covers it: only private and special-purpose ranges pass
 *   (RFC 1918, RFC 6598 shared space, RFC 2544 benchmarking, RFC 5737 documentation, link-local; IPv6 unique local
 *   fc00::/7 and documentation 2001:db8::/32), as a cluster's pod and service networks are;
 *
 * and warned about when it is wider than the configured prefix (default /8 for IPv4, /32 for IPv6). Sans-IO.
 */
import { type Cidr, cidrHas, containsCidr, formatCidr, overlaps, parseCidr } from "../../net/cidr.ts";

/** The ranges a cluster's own subnets may come from without --also-proxy. */
export const PRIVATE_RANGES: readonly string[] = [
  "10.0.0.0/8", // RFC 1918
  "172.16.0.0/12",
  "192.168.0.0/16",
  "100.64.0.0/10", // RFC 6598 shared address space (carrier-grade NAT; some clusters use it for pods)
  "198.18.0.0/15", // RFC 2544 benchmarking
  "192.0.2.0/24", // RFC 5737 documentation
  "198.51.100.0/24",
  "203.0.113.0/24",
  "169.254.0.0/16", // RFC 3927 link-local
  "fc00::/7", // RFC 4193 unique local
  "2001:db8::/32", // RFC 3849 documentation
  "fe80::/10", // RFC 4291 link-local
];

export interface SubnetCheckOptions {
  /** Addresses tp's own connection uses: the manager's, the API server's. */
  protect: readonly string[];
  /** --also-proxy: public subnets the user asked for. */
  alsoProxy: readonly string[];
  /** Warn above this width: the shortest prefix accepted silently, per family. */
  warnPrefix?: { v4: number; v6: number };
}

export interface SubnetCheck {
  accepted: string[];
  refused: { subnet: string; why: string }[];
  warnings: string[];
}

export const DEFAULT_WARN_PREFIX = { v4: 8, v6: 32 } as const;

export function checkClusterSubnets(subnets: readonly string[], opts: SubnetCheckOptions): SubnetCheck {
  const out: SubnetCheck = { accepted: [], refused: [], warnings: [] };
  const privateRanges = PRIVATE_RANGES.map((c) => parseCidr(c));
  const also = opts.alsoProxy.map((c) => parseCidr(c, { loose: true }));
  const warn = opts.warnPrefix ?? DEFAULT_WARN_PREFIX;
  for (const text of subnets) {
    let c: Cidr;
    try {
      c = parseCidr(text, { loose: true });
    } catch {
      out.refused.push({ subnet: text, why: "it is not a CIDR" });
      continue;
    }
    const name = formatCidr(c);
    const why = refusal(c, opts.protect, privateRanges, also);
    if (why) {
      out.refused.push({ subnet: name, why });
      continue;
    }
    const widest = c.family === 4 ? warn.v4 : warn.v6;
    if (c.prefix < widest) {
      out.warnings.push(
        `the cluster's subnet ${name} is wider than /${widest}: tp routes all of it to the cluster (--never-proxy ` +
          `takes parts out)`,
      );
    }
    out.accepted.push(name);
  }
  return out;
}

function refusal(c: Cidr, protect: readonly string[], privateRanges: Cidr[], also: Cidr[]): string | null {
  if (c.prefix === 0) return "it is a default route";
  const own = protect.find((a) => {
    try {
      return cidrHas(c, a);
    } catch {
      return false;
    }
  });
  if (own) return `it holds ${own}, the address tp reaches the cluster at`;
  if (also.some((a) => containsCidr(a, c))) return null;
  if (!privateRanges.some((p) => containsCidr(p, c))) {
    const what = privateRanges.some((p) => overlaps(p, c)) ? "it reaches beyond private addresses" : "it is public";
    return `${what}: route it only if you mean to, with --also-proxy ${formatCidr(c)}`;
  }
  return null;
}

/** One line for the user about the refused subnets, or null. */
export function refusedMessage(refused: SubnetCheck["refused"]): string | null {
  if (!refused.length) return null;
  return `not routing what the cluster announced: ${refused.map((r) => `${r.subnet} (${r.why})`).join("; ")}`;
}
