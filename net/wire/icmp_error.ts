/**
 * ICMP error replies to a packet the router refuses: destination unreachable (port, host, ...) and packet too
 * big, quoting the offending packet, built as a whole IP packet addressed back to its sender.
 *
 * The builders return 0, writing nothing, when the rules forbid an error (RFC 1122 section 3.2.2 for IPv4,
 * RFC 4443 section 2.4 (e) for IPv6): in answer to an ICMP error, to a non-first fragment, to a packet from
 * an unspecified, multicast or broadcast source, or to a multicast or broadcast destination (except packet
 * too big over IPv6, which RFC 4443 allows for multicast).
 */
import { read16, read32 } from "./_bytes.ts";
import type { IpAddress } from "./address.ts";
import { buildIcmpPacket, DEFAULT_TTL, type IpHeader } from "./build.ts";
import type { IcmpRepr } from "./icmp.ts";
import { Icmpv4Unreachable, isIcmpv4ErrorType } from "./icmpv4.ts";
import { Icmpv6Unreachable, isIcmpv6ErrorType } from "./icmpv6.ts";
import { IpProtocol } from "./ip_protocol.ts";
import { findIpv6Transport, type Ipv6Transport } from "./ipv6.ts";

/** Why the destination is unreachable, mapped to the ICMPv4 / ICMPv6 code. */
export type UnreachableReason = "port" | "host" | "net" | "adminProhibited";

const V4_CODES: Record<UnreachableReason, number> = {
  port: Icmpv4Unreachable.PORT,
  host: Icmpv4Unreachable.HOST,
  net: Icmpv4Unreachable.NET,
  adminProhibited: Icmpv4Unreachable.ADMIN_PROHIBITED,
};
const V6_CODES: Record<UnreachableReason, number> = {
  port: Icmpv6Unreachable.PORT,
  host: Icmpv6Unreachable.ADDRESS,
  net: Icmpv6Unreachable.NO_ROUTE,
  adminProhibited: Icmpv6Unreachable.ADMIN_PROHIBITED,
};

/**
 * Quote limits: an ICMPv4 error is at most 576 bytes (RFC 1812 section 4.3.2.3), an ICMPv6 one at most the
 * IPv6 minimum MTU of 1280 (RFC 4443 section 2.4 (c)).
 */
export const ICMPV4_ERROR_MAX_LEN = 576;
export const ICMPV6_ERROR_MAX_LEN = 1280;

export interface IcmpErrorOptions {
  /** Source of the error; default the offending packet's destination (the address that "refused"). */
  from?: IpAddress;
  /** TTL / hop limit, default 64. */
  ttl?: number;
  /** IPv4 identification, default 0. */
  ident?: number;
  /** IPv4 TOS, default 0xc0 like Linux's icmp_send (IPTOS_PREC_INTERNETCONTROL, net/ipv4/icmp.c). */
  tos?: number;
  /** IPv6 flow label, default 0. */
  flowLabel?: number;
}

export interface UnreachableOptions extends IcmpErrorOptions {
  reason: UnreachableReason;
}

export interface PacketTooBigOptions extends IcmpErrorOptions {
  /** The MTU of the next hop. */
  mtu: number;
}

const transport: Ipv6Transport = { protocol: 0, offset: 0 };

/** The IP length of `offending` if an error may answer it, else 0. */
function answerableLength(offending: Uint8Array, allowMulticastDst: boolean): number {
  const version = offending.length > 0 ? offending[0]! >> 4 : 0;
  if (version === 4) {
    if (offending.length < 20) return 0;
    const hl = (offending[0]! & 0x0f) * 4;
    const total = Math.min(read16(offending, 2), offending.length); // a kept prefix is quoted as is
    if (hl < 20 || total < hl) return 0;
    if ((read16(offending, 6) & 0x1fff) !== 0) return 0; // not the first fragment
    const src = read32(offending, 12), dst = read32(offending, 16);
    if (src === 0 || src >>> 28 === 0xe || src === 0xffffffff) return 0;
    if (dst >>> 28 === 0xe || dst === 0xffffffff) return 0;
    if (offending[9] === IpProtocol.ICMP && (total < hl + 1 || isIcmpv4ErrorType(offending[hl]!))) return 0;
    return total;
  }
  if (version === 6) {
    if (offending.length < 40) return 0;
    let unspecified = true;
    for (let i = 8; i < 24; i++) if (offending[i] !== 0) unspecified = false;
    if (unspecified || offending[8] === 0xff) return 0;
    if (offending[24] === 0xff && !allowMulticastDst) return 0;
    const total = Math.min(40 + read16(offending, 4), offending.length);
    const dropped = findIpv6Transport(offending, transport);
    if (dropped === "fragment") return 0; // a non-first fragment cannot be told from a first one without parsing
    if (dropped === null && transport.protocol === IpProtocol.ICMPV6) {
      if (transport.offset >= total || isIcmpv6ErrorType(offending[transport.offset]!)) return 0;
    }
    return total;
  }
  return 0;
}

function build(out: Uint8Array, offending: Uint8Array, repr: IcmpRepr, options: IcmpErrorOptions): number {
  const v4 = offending[0]! >> 4 === 4;
  const max = v4 ? ICMPV4_ERROR_MAX_LEN - 28 : ICMPV6_ERROR_MAX_LEN - 48;
  repr.data = repr.data.subarray(0, Math.min(repr.data.length, max));
  let ip: IpHeader;
  if (v4) {
    const from = options.from ?? read32(offending, 16);
    if (typeof from !== "number") throw new TypeError("An ICMPv4 error needs an IPv4 source");
    ip = {
      src: from,
      dst: read32(offending, 12),
      ttl: options.ttl ?? DEFAULT_TTL,
      tos: options.tos ?? 0xc0,
      ident: options.ident ?? 0,
      dontFragment: false,
    };
  } else {
    const from = options.from ?? offending.subarray(24, 40);
    if (typeof from === "number") throw new TypeError("An ICMPv6 error needs an IPv6 source");
    ip = {
      src: from,
      dst: offending.subarray(8, 24),
      hopLimit: options.ttl ?? DEFAULT_TTL,
      flowLabel: options.flowLabel ?? 0,
    };
  }
  return buildIcmpPacket(out, ip, repr);
}

/**
 * Writes into `out` an ICMP destination-unreachable answering `offending` (a raw IP packet as received, or a
 * prefix of one that the caller kept), quoting as much of it as the size limit allows. Returns the length, or 0 if no error may be sent.
 */
export function buildUnreachable(out: Uint8Array, offending: Uint8Array, options: UnreachableOptions): number {
  const total = answerableLength(offending, false);
  if (total === 0) return 0;
  const code = (offending[0]! >> 4 === 4 ? V4_CODES : V6_CODES)[options.reason];
  return build(out, offending, { kind: "destinationUnreachable", code, data: offending.subarray(0, total) }, options);
}

/**
 * Writes into `out` an ICMPv4 "fragmentation needed" (RFC 1191) or ICMPv6 "packet too big" (RFC 4443 section
 * 3.2) answering `offending`. Returns the length, or 0 if no error may be sent.
 */
export function buildPacketTooBig(out: Uint8Array, offending: Uint8Array, options: PacketTooBigOptions): number {
  const total = answerableLength(offending, true);
  if (total === 0) return 0;
  return build(out, offending, { kind: "packetTooBig", mtu: options.mtu, data: offending.subarray(0, total) }, options);
}
