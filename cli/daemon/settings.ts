/**
 * What `tp connect` was asked for, validated: the daemon runs with these, and a second `tp connect` compares its
 * own against the running daemon's.
 */
import { type Cidr, formatCidr, parseCidr } from "../../net/cidr.ts";

export interface ConnectSettings {
  managerUrl: string;
  token: string;
  namespace: string;
  alsoProxy: string[];
  neverProxy: string[];
  allowConflictingSubnets: string[];
}

import { UsageError } from "../errors.ts";

export { UsageError };

function cidrs(flag: string, values: readonly string[]): string[] {
  return values.map((v) => {
    let c: Cidr;
    try {
      c = parseCidr(v);
    } catch (e) {
      throw new UsageError(`${flag}: ${(e as Error).message}`);
    }
    return formatCidr(c);
  });
}

export interface ConnectFlags {
  managerUrl?: string | undefined;
  token?: string | undefined;
  namespace?: string | undefined;
  alsoProxy?: string[] | undefined;
  neverProxy?: string[] | undefined;
  allowConflictingSubnets?: string[] | undefined;
}

export function validateSettings(flags: ConnectFlags): ConnectSettings {
  const url = flags.managerUrl ?? "";
  if (!url) {
    throw new UsageError(
      "--manager-url is required: the traffic-manager's address, like http://198.18.0.2:8081 (h2c) or https://... (TLS)",
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
  const ns = flags.namespace ?? "default";
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(ns)) {
    throw new UsageError(`--namespace: "${ns}" is not a Kubernetes namespace name (lower-case letters, digits, '-')`);
  }
  return {
    managerUrl: parsed.href.replace(/\/$/, ""),
    token: flags.token ?? "",
    namespace: ns,
    alsoProxy: cidrs("--also-proxy", flags.alsoProxy ?? []),
    neverProxy: cidrs("--never-proxy", flags.neverProxy ?? []),
    allowConflictingSubnets: cidrs("--allow-conflicting-subnets", flags.allowConflictingSubnets ?? []),
  };
}

/** The settings that differ between two requests, as "flag: a vs b" phrases (the token is never shown). */
export function settingsDiff(running: ConnectSettings, wanted: ConnectSettings): string[] {
  const out: string[] = [];
  const flag: Record<keyof ConnectSettings, string> = {
    managerUrl: "--manager-url",
    token: "--token",
    namespace: "--namespace",
    alsoProxy: "--also-proxy",
    neverProxy: "--never-proxy",
    allowConflictingSubnets: "--allow-conflicting-subnets",
  };
  for (const k of Object.keys(flag) as (keyof ConnectSettings)[]) {
    const a = JSON.stringify(running[k]);
    const b = JSON.stringify(wanted[k]);
    if (a === b) continue;
    out.push(k === "token" ? `${flag[k]} differs` : `${flag[k]}: ${a} now, ${b} asked`);
  }
  return out;
}
