/**
 * Test helpers: DNS messages built with dns-packet (an implementation independent of tp's), and fake forwarders.
 */
// @deno-types="@types/dns-packet"
import * as dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import type { Forwarder } from "./resolver.ts";

export { dnsPacket };

export function hex(s: string): Uint8Array {
  return Uint8Array.from(s.match(/../g)!.map((h) => parseInt(h, 16)));
}

export function opt(udpSize: number, dnssecOk: boolean): dnsPacket.Answer {
  return {
    type: "OPT",
    name: ".",
    udpPayloadSize: udpSize,
    extendedRcode: 0,
    ednsVersion: 0,
    flags: dnssecOk ? dnsPacket.DNSSEC_OK : 0,
    flag_do: dnssecOk,
    options: [],
  };
}

export function query(
  name: string,
  type: dnsPacket.RecordType = "A",
  options: { id?: number; udpSize?: number; dnssecOk?: boolean } = {},
): Uint8Array {
  return new Uint8Array(dnsPacket.encode({
    type: "query",
    id: options.id ?? 0x1234,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name }],
    ...(options.udpSize !== undefined
      ? {
        additionals: [opt(options.udpSize, options.dnssecOk ?? false)],
      }
      : {}),
  }));
}

/** dns-packet's decoding, with the rcode its types leave out. */
export function decode(bytes: Uint8Array): dnsPacket.DecodedPacket & { rcode: string } {
  return dnsPacket.decode(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)) as
    & dnsPacket.DecodedPacket
    & { rcode: string };
}

// Captured from the lab's cluster dnsmasq (198.19.0.53): SRV _http._tcp.echo.default.svc.cluster.local. The target
// is written out in the SRV RDATA; the additional A and AAAA records point at it (offset 0x4d) with compression.
export const CAPTURED_SRV = hex(
  "123485800001000100000002055f68747470045f746370046563686f0764656661756c740373766307636c7573746572056c6f63616c" +
    "0000210001c00c00210001000000000026000000641f90046563686f0764656661756c740373766307636c7573746572056c6f63616c" +
    "00c04d00010001000000000004c613000ac04d001c000100000000001020010db8000500000000000000000010",
);

export interface FakeZone {
  /** name -> records answered for it (any type listed). */
  [name: string]: dnsPacket.Answer[];
}

/** An SOA for negative answers: TTL `ttl`, MINIMUM `minimum`. */
export function soa(zone: string, ttl: number, minimum: number): dnsPacket.Answer {
  return {
    type: "SOA",
    name: zone,
    ttl,
    data: {
      mname: `ns.${zone}`,
      rname: `hostmaster.${zone}`,
      serial: 1,
      refresh: 60,
      retry: 60,
      expire: 600,
      minimum,
    },
  } as dnsPacket.Answer;
}

/**
 * A forwarder that answers from `zone` like an authoritative server: the records of the asked type, NODATA when the
 * name has other types, NXDOMAIN otherwise; negative answers carry `negativeSoa` when given. It records every
 * question it saw.
 */
export function zoneForwarder(
  zone: FakeZone,
  options: { negativeSoa?: dnsPacket.Answer; delayMs?: number } = {},
): Forwarder & { asked: string[] } {
  const asked: string[] = [];
  const fwd = async (q: Uint8Array, signal: AbortSignal): Promise<Uint8Array> => {
    const p = decode(q);
    const question = p.questions![0]!;
    asked.push(`${question.name} ${question.type}`);
    if (options.delayMs) {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, options.delayMs);
        signal.addEventListener("abort", () => {
          clearTimeout(t);
          reject(new Error("aborted"));
        });
      });
    }
    const records = zone[question.name.toLowerCase()];
    const matching = (records ?? []).filter((r) => r.type === question.type || r.type === "CNAME");
    const negative = matching.length === 0;
    return new Uint8Array(dnsPacket.encode({
      type: "response",
      id: p.id ?? 0,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (records ? 0 : 3),
      questions: [question],
      answers: matching,
      authorities: negative && options.negativeSoa ? [options.negativeSoa] : [],
      additionals: (p.additionals ?? []).filter((a) => a.type === "OPT").map(() => opt(1232, false)),
    }));
  };
  return Object.assign(fwd, { asked });
}

/** A forwarder that never answers (it only stops when aborted). */
export function silentForwarder(): Forwarder & { calls: number; aborted: number } {
  const state = { calls: 0, aborted: 0 };
  const fwd = (_q: Uint8Array, signal: AbortSignal) =>
    new Promise<Uint8Array>((_resolve, reject) => {
      state.calls++;
      signal.addEventListener("abort", () => {
        state.aborted++;
        reject(new Error("aborted"));
      });
    });
  return Object.defineProperties(fwd, {
    calls: { get: () => state.calls },
    aborted: { get: () => state.aborted },
  }) as Forwarder & { calls: number; aborted: number };
}

/** The TTL of a decoded record (dns-packet's OPT type has none). */
export function ttlOf(a: dnsPacket.Answer): number | undefined {
  return (a as { ttl?: number }).ttl;
}

/** The data of a decoded record (dns-packet's OPT type has none). */
export function dataOf(a: dnsPacket.Answer): unknown {
  return (a as { data?: unknown }).data;
}
