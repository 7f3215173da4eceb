/**
 * What `tp connect` was asked for, validated: the daemon runs with these, and a second `tp connect` compares its
 * own against the running daemon's.
 */
import { type Cidr, formatCidr, parseCidr } from "../../net/cidr.ts";
import { errorMessage } from "../../base/error_message.ts";

export interface ConnectSettings {
  /** A direct traffic-manager URL; "" means Kubernetes: a port-forward through the API server (the `kube` fields). */
  managerUrl: string;
  token: string;
  namespace: string;
  /** Kubernetes mode: the kubeconfig file ("" for KUBECONFIG or ~/.kube/config), its context, the manager's namespace. */
  kubeconfig: string;
  context: string;
  managerNamespace: string;
  alsoProxy: string[];
  neverProxy: string[];
  allowConflictingSubnets: string[];
  /** Warn when the cluster announces a subnet wider than these prefixes ("8,32": IPv4 /8, IPv6 /32). */
  warnPrefix: string;
}

import { UsageError } from "../errors.ts";

export { UsageError };

function cidrs(flag: string, values: readonly string[]): string[] {
  return values.map((v) => {
    let c: Cidr;
    try {
      c = parseCidr(v);
    } catch (e) {
      throw new UsageError(`${flag}: ${errorMessage(e)}`);
    }
    return formatCidr(c);
  });
}

export interface ConnectFlags {
  managerUrl?: string | undefined;
  kubeconfig?: string | undefined;
  context?: string | undefined;
  managerNamespace?: string | undefined;
  token?: string | undefined;
  namespace?: string | undefined;
  alsoProxy?: string[] | undefined;
  neverProxy?: string[] | undefined;
  allowConflictingSubnets?: string[] | undefined;
  warnPrefix?: string | undefined;
}

/**
 * Validates the flags. Without --manager-url tp goes through Kubernetes, and `kube` resolves the kubeconfig (as the
 * invoking user) to its context and namespace; its errors say the fix.
 */
export function validateSettings(
  flags: ConnectFlags,
  kube: (f: ConnectFlags) => { context: string; namespace: string } = () => {
    throw new UsageError("--manager-url is required");
  },
): ConnectSettings {
  const common = {
    token: flags.token ?? "",
    alsoProxy: cidrs("--also-proxy", flags.alsoProxy ?? []),
    neverProxy: cidrs("--never-proxy", flags.neverProxy ?? []),
    allowConflictingSubnets: cidrs("--allow-conflicting-subnets", flags.allowConflictingSubnets ?? []),
    warnPrefix: formatWarnPrefix(parseWarnPrefix(flags.warnPrefix ?? "8,32")),
  };
  const url = flags.managerUrl ?? "";
  if (!url) {
    const k = kube(flags);
    return {
      managerUrl: "",
      namespace: namespaceName(flags.namespace ?? k.namespace),
      kubeconfig: flags.kubeconfig ?? "",
      context: k.context,
      managerNamespace: namespaceName(flags.managerNamespace ?? "tp", "--manager-namespace"),
      ...common,
    };
  }
  if (flags.kubeconfig || flags.context) {
    throw new UsageError(
      "--manager-url connects directly: leave out --kubeconfig and --context, or leave out --manager-url",
    );
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--manager-url: Cannot parse URL "${url}": use http://HOST:PORT or https://HOST:PORT`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new UsageError(`--manager-url: "${url}" must start with http:// (h2c) or https:// (TLS)`);
  }
  return {
    managerUrl: parsed.href.replace(/\/$/, ""),
    namespace: namespaceName(flags.namespace ?? "default"),
    kubeconfig: "",
    context: "",
    managerNamespace: "",
    ...common,
  };
}

/** "8,32" (IPv4, IPv6 prefix lengths; one number sets IPv4 only, IPv6 then 24 more) -> { v4, v6 }. */
export function parseWarnPrefix(text: string): { v4: number; v6: number } {
  const m = /^(\d{1,2})(?:,(\d{1,3}))?$/.exec(text.trim());
  const v4 = Number(m?.[1]), v6 = m?.[2] === undefined ? v4 + 24 : Number(m[2]);
  if (!m || v4 > 32 || v6 > 128) {
    throw new UsageError(`--warn-prefix: "${text}" is not IPV4_PREFIX[,IPV6_PREFIX], e.g. 8,32`);
  }
  return { v4, v6 };
}

function formatWarnPrefix(p: { v4: number; v6: number }): string {
  return `${p.v4},${p.v6}`;
}

function namespaceName(ns: string, flag = "--namespace"): string {
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(ns)) {
    throw new UsageError(`${flag}: "${ns}" is not a Kubernetes namespace name (lower-case letters, digits, '-')`);
  }
  return ns;
}

/** The settings that differ between two requests, as "flag: a vs b" phrases (the token is never shown). */
export function settingsDiff(running: ConnectSettings, wanted: ConnectSettings): string[] {
  const out: string[] = [];
  const flag: Record<keyof ConnectSettings, string> = {
    managerUrl: "--manager-url",
    kubeconfig: "--kubeconfig",
    context: "--context",
    managerNamespace: "--manager-namespace",
    token: "--token",
    namespace: "--namespace",
    alsoProxy: "--also-proxy",
    neverProxy: "--never-proxy",
    allowConflictingSubnets: "--allow-conflicting-subnets",
    warnPrefix: "--warn-prefix",
  };
  for (const k of Object.keys(flag) as (keyof ConnectSettings)[]) {
    const a = JSON.stringify(running[k]);
    const b = JSON.stringify(wanted[k]);
    if (a === b) continue;
    out.push(k === "token" ? `${flag[k]} differs` : `${flag[k]}: ${a} now, ${b} asked`);
  }
  return out;
}

/** Where the manager is, for messages: its URL, or the Kubernetes context and namespace. */
export function describeTarget(s: ConnectSettings): string {
  return s.managerUrl || `namespace ${s.managerNamespace} of Kubernetes context "${s.context}" (port-forward)`;
}
