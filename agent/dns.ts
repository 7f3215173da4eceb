/**
 * DNS in the pod's own context: the manager sends an agent the queries for names in its namespace while one of its
 * workload's ports is intercepted, and the agent answers as the pod would see it: from the pod's nameserver (its
 * resolv.conf), then from the pod's hosts file (Kubernetes writes a pod's hostAliases there). A name the workstation
 * sent as `<name>.<ns>.svc.<domain>` (tp's search list expands single labels that way) is also looked up as
 * `<name>`, the way the app in the pod would ask for it.
 */
// @deno-types="@types/dns-packet"
import * as dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { Rcode, RrType, scanMessage } from "../net/dns/message.ts";

/** How long the pod's nameserver has to answer. */
export const POD_DNS_TIMEOUT_MS = 1_500;
/** The TTL of answers made from the hosts file (as CoreDNS's hosts plugin: 3600 is its default; short is safer). */
const HOSTS_TTL = 5;

export interface RawForwarder {
  forward(query: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
}

/** A hosts file: name (lower case) -> addresses. */
export function parseHosts(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) continue;
    const [ip, ...names] = line.split(/\s+/);
    for (const n of names) {
      const k = n.toLowerCase().replace(/\.$/, "");
      out.set(k, [...(out.get(k) ?? []), ip!]);
    }
  }
  return out;
}

export class PodResolver {
  constructor(
    readonly forwarder: RawForwarder | undefined,
    readonly hosts: Map<string, string[]>,
    readonly namespace: string,
    readonly clusterDomain: string,
  ) {}

  /** The pod's answer to a raw query; an empty array when the pod knows nothing (the manager then asks itself). */
  async answer(query: Uint8Array): Promise<Uint8Array> {
    const info = scanMessage(query);
    const q = info?.question;
    if (!info || !q) return new Uint8Array();
    let fromServer: Uint8Array | undefined;
    if (this.forwarder) {
      try {
        fromServer = await this.forwarder.forward(query, POD_DNS_TIMEOUT_MS);
        const a = scanMessage(fromServer);
        if (a && a.rcode === Rcode.NOERROR && a.records.some((r) => r.section === "answer")) return fromServer;
      } catch {
        // The pod's nameserver did not answer: the hosts file may.
      }
    }
    if (q.type === RrType.A || q.type === RrType.AAAA) {
      const v6 = q.type === RrType.AAAA;
      const suffix = `.${this.namespace}.svc.${this.clusterDomain}`;
      const names = [q.name, ...(q.name.endsWith(suffix) ? [q.name.slice(0, -suffix.length)] : [])];
      for (const n of names) {
        const ips = (this.hosts.get(n) ?? []).filter((ip) => ip.includes(":") === v6);
        if (ips.length) return hostsAnswer(query, q.name, v6, ips);
      }
    }
    return fromServer ?? new Uint8Array();
  }
}

function hostsAnswer(query: Uint8Array, name: string, v6: boolean, ips: string[]): Uint8Array {
  const q = dnsPacket.decode(Buffer.from(query));
  const answer = dnsPacket.encode({
    id: q.id,
    type: "response",
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | dnsPacket.AUTHORITATIVE_ANSWER,
    questions: q.questions,
    answers: ips.map((ip) => ({ type: v6 ? "AAAA" : "A", name, ttl: HOSTS_TTL, class: "IN", data: ip })),
  } as dnsPacket.Packet);
  return new Uint8Array(answer);
}
