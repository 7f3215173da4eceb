/**
 * Which subnets tp routes to its device, and whether they collide with routes this machine already has.
 */
import { type Cidr, formatCidr, normalizeCidrs, overlaps, parseCidr, subtractCidrs } from "../../net/cidr.ts";
import { checkClusterSubnets, refusedMessage, type SubnetCheckOptions } from "./cluster_subnets.ts";

/** What decides the routes besides the cluster's word: the subnet check's options and --never-proxy. */
export interface RoutePolicy extends SubnetCheckOptions {
  neverProxy: readonly string[];
}

/** The routes for what the cluster announced, and what the check had to say about it. */
export interface RouteProjection {
  routes: Cidr[];
  /** The subnets refused, as one message for the user (cluster_subnets.ts), or null. */
  refused: string | null;
  warnings: string[];
}

/**
 * The cluster's subnets, checked (cluster_subnets.ts: no default route, nothing holding tp's own connection, no public
 * range unless --also-proxy names it), then planned (`planRoutes`). The daemon's first routes and each refresh after
 * the cluster's subnets change come from here.
 */
export function projectRoutes(
  cluster: { podSubnets: readonly string[]; serviceSubnets: readonly string[] },
  policy: RoutePolicy,
): RouteProjection {
  const pods = checkClusterSubnets(cluster.podSubnets, policy),
    services = checkClusterSubnets(cluster.serviceSubnets, policy);
  return {
    routes: planRoutes({
      podSubnets: pods.accepted,
      serviceSubnets: services.accepted,
      alsoProxy: policy.alsoProxy,
      neverProxy: policy.neverProxy,
    }),
    refused: refusedMessage([...pods.refused, ...services.refused]),
    warnings: [...pods.warnings, ...services.warnings],
  };
}

export interface RoutePlanInput {
  podSubnets: readonly string[];
  serviceSubnets: readonly string[];
  alsoProxy: readonly string[];
  neverProxy: readonly string[];
}

/** The cluster's subnets plus --also-proxy, minus --never-proxy (as the smallest set of CIDRs that covers it). */
export function planRoutes(input: RoutePlanInput): Cidr[] {
  const want = normalizeCidrs(
    [...input.podSubnets, ...input.serviceSubnets, ...input.alsoProxy].map((c) => parseCidr(c, { loose: true })),
  );
  const holes = input.neverProxy.map((c) => parseCidr(c, { loose: true }));
  return want.flatMap((c) => subtractCidrs(c, holes));
}

/** A route the machine has, as the conflict check needs it. */
export interface ExistingRoute {
  dst: string;
  dev?: string | undefined;
  table: number;
  type: string;
}

export interface Conflict {
  ours: string;
  theirs: string;
  dev: string;
}

const MAIN_TABLE = 254;
const LOCAL_TABLE = 255;

/**
 * Our routes that overlap a route of this machine (main table unicast routes and local addresses), except default
 * routes, routes on our own device, and overlaps inside an --allow-conflicting-subnets CIDR.
 */
export function findConflicts(
  ours: readonly Cidr[],
  existing: readonly ExistingRoute[],
  opts: { ownDevice?: string; allow: readonly string[] },
): Conflict[] {
  const allow = opts.allow.map((a) => parseCidr(a, { loose: true }));
  const out: Conflict[] = [];
  for (const r of existing) {
    if (r.dev !== undefined && r.dev === opts.ownDevice) continue;
    if (r.table !== MAIN_TABLE && r.table !== LOCAL_TABLE) continue;
    if (r.type !== "unicast" && r.type !== "local") continue;
    let theirs: Cidr;
    try {
      theirs = parseCidr(r.dst, { loose: true });
    } catch {
      continue;
    }
    if (theirs.prefix === 0) continue;
    for (const o of ours) {
      if (!overlaps(o, theirs)) continue;
      const inner = o.prefix >= theirs.prefix ? o : theirs;
      if (allow.some((a) => overlaps(a, inner) && a.prefix <= inner.prefix)) continue;
      out.push({ ours: formatCidr(o), theirs: formatCidr(theirs), dev: r.dev ?? "?" });
    }
  }
  return out;
}

/** The message for conflicts: each one named, and the flag that overrides. */
export function conflictMessage(conflicts: readonly Conflict[]): string {
  const tpDevices = [...new Set(conflicts.map((c) => c.dev).filter((d) => /^tp\d+$/.test(d)))];
  if (tpDevices.length && tpDevices.length === new Set(conflicts.map((c) => c.dev)).size) {
    return `another tp connection already routes the cluster's subnets through ${tpDevices.join(", ")}: ` +
      `run tp quit for it first (with its TP_STATE_DIR, if it has its own)`;
  }
  const lines = conflicts.map((c) => `  cluster subnet ${c.ours} overlaps the route ${c.theirs} on ${c.dev}`);
  return `the cluster's subnets overlap routes this machine already has:\n${lines.join("\n")}\n` +
    `tp does not take over those addresses. If you do want them routed to the cluster, add ` +
    conflicts.map((c) => `--allow-conflicting-subnets ${c.theirs}`).filter((v, i, a) => a.indexOf(v) === i).join(" ") +
    `; to leave them alone, --never-proxy them.`;
}

/** What to add and remove to go from one route plan to another. */
export function diffRoutes(current: readonly Cidr[], next: readonly Cidr[]): { add: Cidr[]; remove: Cidr[] } {
  const has = (list: readonly Cidr[], c: Cidr) =>
    list.some((x) => x.family === c.family && x.base === c.base && x.prefix === c.prefix);
  return { add: next.filter((c) => !has(current, c)), remove: current.filter((c) => !has(next, c)) };
}
