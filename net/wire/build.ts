/**
 * Whole-packet builders for the router's outbound path (towards the TUN): IPv4 or IPv6 header plus a TCP, UDP or
 * ICMP message, written into a caller-supplied buffer with checksums, returning the packet length. No allocation:
 * the header objects can be reused per flow, and the payload is copied once into `out`.
 *
 * They take (buffer, layer 3, layer 4, options), one argument more than STYLE.md's habit, to avoid a wrapper object
 * per packet on the hot path.
 */
import { write16, write32 } from "./_bytes.ts";
import type { Ipv4Address, Ipv6Address } from "./address.ts";
import { finishChecksum, foldSum, sumWords } from "./checksum.ts";
import { ICMP_HEADER_LEN, IcmpMessage, type IcmpRepr } from "./icmp.ts";
import { emitIcmpv4 } from "./icmpv4.ts";
import { emitIcmpv6 } from "./icmpv6.ts";
import { IpProtocol } from "./ip_protocol.ts";
import { IPV4_HEADER_LEN } from "./ipv4.ts";
import { IPV6_HEADER_LEN } from "./ipv6.ts";
import { tcpBufferLen, writeTcpAt } from "./tcp.ts";
import type { TcpRepr } from "./tcp_repr.ts";
import { UDP_HEADER_LEN, type UdpRepr, writeUdpAt } from "./udp.ts";

/** Linux's default TTL / hop limit (net.ipv4.ip_default_ttl, net.ipv6.conf.*.hop_limit). */
export const DEFAULT_TTL = 64;

/** IPv4 header fields for a built packet. Unset fields: TTL 64, TOS 0, ident 0, DF set (RFC 6864 section 4.1). */
export interface Ipv4Header {
  src: Ipv4Address;
  dst: Ipv4Address;
  ttl?: number;
  tos?: number;
  ident?: number;
  dontFragment?: boolean;
}

/** IPv6 header fields for a built packet (no extension headers). Unset fields: hop limit 64, class and label 0. */
export interface Ipv6Header {
  src: Ipv6Address;
  dst: Ipv6Address;
  hopLimit?: number;
  trafficClass?: number;
  flowLabel?: number;
}

/** Either header; the family is told by `typeof src` (number for IPv4). */
export type IpHeader = Ipv4Header | Ipv6Header;

/**
 * How the transport checksum is written: `full` computes it; `partial` stores the folded pseudo-header sum
 * uncomplemented, as a device with checksum offload expects (virtio_net_hdr VIRTIO_NET_HDR_F_NEEDS_CSUM,
 * Linux CHECKSUM_PARTIAL); `none` leaves zero. The IPv4 header checksum is always computed.
 */
export type ChecksumMode = "full" | "partial" | "none";

export interface BuildOptions {
  /** Default `full`. */
  checksum?: ChecksumMode;
}

const NO_OPTIONS: BuildOptions = {};

/** Writes an IP header for `l4Len` bytes of `protocol` and returns the unfolded pseudo-header sum. */
function writeIpHeader(out: Uint8Array, ip: IpHeader, protocol: number, l4Len: number): number {
  if (typeof ip.src === "number") {
    const v4 = ip as Ipv4Header;
    const total = IPV4_HEADER_LEN + l4Len;
    if (total > 0xffff) throw new RangeError(`An IPv4 packet cannot be ${total} bytes long`);
    if (out.length < total) throw new RangeError(`Cannot build a ${total}-byte packet into ${out.length} bytes`);
    out[0] = 0x45;
    out[1] = v4.tos ?? 0;
    write16(out, 2, total);
    write16(out, 4, v4.ident ?? 0);
    write16(out, 6, v4.dontFragment === false ? 0 : 0x4000);
    out[8] = v4.ttl ?? DEFAULT_TTL;
    out[9] = protocol;
    write16(out, 10, 0);
    write32(out, 12, v4.src);
    write32(out, 16, v4.dst);
    write16(out, 10, finishChecksum(sumWords(out, 0, IPV4_HEADER_LEN)));
    return sumWords(out, 12, 20, protocol + l4Len);
  }
  const v6 = ip as Ipv6Header;
  const total = IPV6_HEADER_LEN + l4Len;
  if (l4Len > 0xffff) throw new RangeError(`An IPv6 payload cannot be ${l4Len} bytes long`);
  if (out.length < total) throw new RangeError(`Cannot build a ${total}-byte packet into ${out.length} bytes`);
  if (v6.src.length !== 16 || v6.dst.length !== 16) throw new RangeError("IPv6 addresses have 16 bytes");
  write32(out, 0, (0x60000000 | ((v6.trafficClass ?? 0) & 0xff) << 20 | ((v6.flowLabel ?? 0) & 0xfffff)) >>> 0);
  write16(out, 4, l4Len);
  out[6] = protocol;
  out[7] = v6.hopLimit ?? DEFAULT_TTL;
  out.set(v6.src, 8);
  out.set(v6.dst, 24);
  return sumWords(out, 8, 40, protocol + l4Len);
}

function ipHeaderLen(ip: IpHeader): number {
  return typeof ip.src === "number" ? IPV4_HEADER_LEN : IPV6_HEADER_LEN;
}

function storeChecksum(out: Uint8Array, start: number, end: number, field: number, sum: number, mode: ChecksumMode) {
  if (mode === "full") write16(out, field, finishChecksum(sumWords(out, start, end, sum)));
  else if (mode === "partial") write16(out, field, foldSum(sum));
}

/** Builds IP + TCP (options and payload included) into `out`; returns the packet length. */
export function buildTcpPacket(out: Uint8Array, ip: IpHeader, tcp: TcpRepr, options = NO_OPTIONS): number {
  const l4Len = tcpBufferLen(tcp);
  const start = ipHeaderLen(ip);
  const sum = writeIpHeader(out, ip, IpProtocol.TCP, l4Len);
  const end = writeTcpAt(tcp, out, start);
  storeChecksum(out, start, end, start + 16, sum, options.checksum ?? "full");
  return end;
}

/** Builds IP + UDP into `out`; returns the packet length. A computed zero checksum is sent as 0xffff. */
export function buildUdpPacket(out: Uint8Array, ip: IpHeader, udp: UdpRepr, options = NO_OPTIONS): number {
  const l4Len = UDP_HEADER_LEN + udp.payload.length;
  const start = ipHeaderLen(ip);
  const sum = writeIpHeader(out, ip, IpProtocol.UDP, l4Len);
  const end = writeUdpAt(udp, out, start);
  const mode = options.checksum ?? "full";
  if (mode === "full") write16(out, start + 6, finishChecksum(sumWords(out, start, end, sum)) || 0xffff);
  else storeChecksum(out, start, end, start + 6, sum, mode);
  return end;
}

/**
 * Builds IP + ICMP (ICMPv4 for an IPv4 header, ICMPv6 for IPv6) into `out`; returns the packet length. The
 * ICMP checksum is always computed (no device offloads it).
 */
export function buildIcmpPacket(out: Uint8Array, ip: IpHeader, icmp: IcmpRepr): number {
  const l4Len = ICMP_HEADER_LEN + icmp.data.length;
  const start = ipHeaderLen(ip);
  const v4 = typeof ip.src === "number";
  const sum = writeIpHeader(out, ip, v4 ? IpProtocol.ICMP : IpProtocol.ICMPV6, l4Len);
  const message = new IcmpMessage(out.subarray(start, start + l4Len));
  if (v4) emitIcmpv4(icmp, message);
  else emitIcmpv6(icmp, message, sum);
  return start + l4Len;
}
