/**
 * The traffic-manager's configuration: what `tp manager`'s flags produce, checked once.
 */
import ipaddr from "ipaddr.js";
import { formatCidr, parseCidr } from "../net/cidr.ts";
import { DEFAULT_SESSION_BUFFER_BYTES } from "./session_buffer.ts";

export interface HostPort {
  host: string;
  port: number;
}

export interface ManagerConfig {
  listen: HostPort;
  /** The agent port: only the traffic-agents' methods, each agent admitted by its workload's credential. */
  agentListen?: HostPort | undefined;
  podCidrs: string[];
  serviceCidrs: string[];
  dnsServer: HostPort;
  clusterDomain: string;
  /** Destinations the manager may dial; empty means the cluster's subnets and DNS server. */
  allow: string[];
  /** Clients must present it as "authorization: Bearer <token>"; undefined accepts every client. */
  token: string | undefined;
  tls: { cert: string; key: string } | undefined;
  sessionTtlMs: number;
  dialTimeoutMs: number;
  /** A TCP stream with no payload either way for this long is reset. */
  tcpIdleTimeoutMs: number;
  /** A UDP flow with no datagram either way for this long ends. */
  udpIdleTimeoutMs: number;
  maxMessageSize: number;
  maxStreamsPerSession: number;
  maxSessions: number;
  /** Outbound bytes a stream may queue before its reading from the destination pauses. */
  streamBufferBytes: number;
  /**
   * Bytes the manager may hold for all of one session's streams (queued outbound, kept for a resume); at it, the
   * session's destination sockets pause until it falls below (default 64 MiB, `session_buffer.ts` says why).
   */
  sessionBufferBytes?: number;
  /** How long a new tunnel stream may take to send its open frame (default 3 s; tp sends it with the headers). */
  openTimeoutMs?: number;
  /** How long a resumable stream whose connection broke is kept for its workstation (default 30 s). */
  resumeGraceMs?: number;
  /** Outbound bytes a resumable stream keeps until acknowledged; past them its reading pauses (default 4 MiB). */
  resumeBufferBytes?: number;
  /**
   * How long intercepted connections announced to a workstation whose watch went away (its link broke) wait for its
   * next watch before the pod's app serves them (default 3 s).
   */
  interceptGraceMs?: number;
}

export const DEFAULTS = {
  listen: "0.0.0.0:8081",
  clusterDomain: "cluster.local",
  sessionTtlMs: 30_000,
  dialTimeoutMs: 5_000,
  tcpIdleTimeoutMs: 3_600_000,
  udpIdleTimeoutMs: 60_000,
  // 64 KiB of payload plus headroom for control messages; a DNS message is at most 65535 bytes.
  maxMessageSize: 128 * 1024,
  maxStreamsPerSession: 4096,
  maxSessions: 256,
  streamBufferBytes: 256 * 1024,
  sessionBufferBytes: DEFAULT_SESSION_BUFFER_BYTES,
  resumeGraceMs: 30_000,
  resumeBufferBytes: 4 << 20,
  interceptGraceMs: 3_000,
} as const;

/** Parses "HOST:PORT", "[V6]:PORT" or, with a default port, a bare host. */
export function parseHostPort(text: string, defaultPort?: number): HostPort {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  let host: string;
  let portText: string | undefined;
  if (m) {
    host = m[1]!;
    portText = m[2];
  } else if (ipaddr.IPv6.isValid(text)) {
    host = text; // a bare IPv6 address
  } else {
    throw new SyntaxError(`Cannot parse HOST:PORT "${text}"`);
  }
  const port = portText === undefined ? defaultPort : Number(portText);
  if (port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new SyntaxError(`Cannot parse HOST:PORT "${text}": ${portText === undefined ? "no port" : "bad port"}`);
  }
  return { host, port };
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(":") ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** Checks a CIDR and returns it in canonical form ("10.0.0.0/8"); the errors are `net/cidr.ts`'s. */
export function canonicalCidr(text: string): string {
  return formatCidr(parseCidr(text));
}

/** The first nameserver in resolv.conf text, as the manager's default DNS server. */
export function firstNameserver(resolvConf: string): HostPort | undefined {
  for (const line of resolvConf.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && ipaddr.isValid(m[1]!.replace(/%.*$/, ""))) return { host: m[1]!.replace(/%.*$/, ""), port: 53 };
  }
  return undefined;
}

/** A set of CIDRs and single addresses a destination must fall in. */
export class AllowList {
  readonly #ranges: [ipaddr.IPv4 | ipaddr.IPv6, number][];

  constructor(cidrs: readonly string[]) {
    this.#ranges = cidrs.map((c) => ipaddr.parseCIDR(c));
  }

  /** The list a manager uses: its --allow CIDRs, or else its subnets and DNS server. */
  static forConfig(config: ManagerConfig): AllowList {
    if (config.allow.length > 0) return new AllowList(config.allow);
    const dns = ipaddr.parse(config.dnsServer.host);
    const dnsCidr = `${dns.toString()}/${dns.kind() === "ipv4" ? 32 : 128}`;
    return new AllowList([...config.podCidrs, ...config.serviceCidrs, dnsCidr]);
  }

  /** Whether ip lies in the list. A malformed ip is not allowed. IPv4-mapped IPv6 counts as IPv4. */
  allows(ip: string): boolean {
    let addr: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      addr = ipaddr.process(ip);
    } catch {
      return false;
    }
    for (const range of this.#ranges) {
      if (range[0].kind() === addr.kind() && addr.match(range)) return true;
    }
    return false;
  }
}

/** Parses a duration: "250ms", "5s", "2m", "1h", or bare milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new SyntaxError(`Cannot parse duration "${text}" (examples: 500ms, 5s, 2m, 1h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "ms") as "ms" | "s" | "m" | "h"];
  const ms = Math.round(Number(m[1]) * unit);
  if (ms <= 0) throw new RangeError(`Duration "${text}" must be above zero`);
  return ms;
}

/** Parses a byte size: "131072", "128KiB", "1MiB". */
export function parseSize(text: string): number {
  const m = /^(\d+)\s*(B|KiB|MiB)?$/i.exec(text.trim());
  if (!m) throw new SyntaxError(`Cannot parse size "${text}" (examples: 131072, 128KiB, 1MiB)`);
  const unit = { b: 1, kib: 1024, mib: 1 << 20 }[(m[2] ?? "b").toLowerCase() as "b" | "kib" | "mib"];
  return Number(m[1]) * unit;
}
