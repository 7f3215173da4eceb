/**
 * One-call classification of a raw IP packet from the TUN, for the router's hot path: validates the IP header
 * (and IPv6 extension chain), the transport header and, unless turned off, every checksum, then fills a reused
 * `PacketInfo` with where things are. It allocates nothing; addresses stay in the packet (IPv4 ones are read
 * into numbers). Returns null, or the `DropReason` to count.
 */
import { read16, read32 } from "./_bytes.ts";
import { flowKeyV4, flowKeyV6At, type IpAddress } from "./address.ts";
import { foldSum, sumWords } from "./checksum.ts";
import type { DropReason } from "./drop.ts";
import { IpProtocol } from "./ip_protocol.ts";
import { checkIpv6, findIpv6Transport, IPV6_HEADER_LEN, type Ipv6Transport } from "./ipv6.ts";

/** What `classify` found. One instance is reused for every packet; fields are valid until the next call. */
export class PacketInfo {
  version: 4 | 6 = 4;
  /** Transport protocol: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6 (`IpProtocol`). */
  protocol = 0;
  /** IPv4 source and destination as uint32; 0 for IPv6 (the addresses are at bytes 8 and 24 of the packet). */
  src4 = 0;
  dst4 = 0;
  /** TTL or hop limit. */
  ttl = 0;
  /** The IP packet's length from its header (bytes after it in the buffer are link padding, ignored). */
  ipLength = 0;
  /** Offset of the transport header (after IPv4 options or IPv6 extension headers). */
  transportOffset = 0;
  /** TCP/UDP ports; 0 for ICMP. */
  srcPort = 0;
  dstPort = 0;
  /** TCP flag bits (`TcpFlags`); 0 for other protocols. */
  tcpFlags = 0;
  /** ICMP type and code; 0 for other protocols. */
  icmpType = 0;
  icmpCode = 0;
  /** Transport payload range [payloadOffset, payloadEnd): TCP data, UDP data, ICMP data after 8 bytes. */
  payloadOffset = 0;
  payloadEnd = 0;

  /** The source address: a number for IPv4, a copy of the 16 bytes for IPv6 (allocates; once per new flow). */
  srcAddress(packet: Uint8Array): IpAddress {
    return this.version === 4 ? this.src4 : packet.slice(8, 24);
  }
  dstAddress(packet: Uint8Array): IpAddress {
    return this.version === 4 ? this.dst4 : packet.slice(24, 40);
  }
  /** The 5-tuple key (`flowKeyV4` / `flowKeyV6`) as the packet travels: source first. */
  flowKey(packet: Uint8Array): string {
    return this.version === 4
      ? flowKeyV4(this.src4, this.srcPort, this.dst4, this.dstPort, this.protocol)
      : flowKeyV6At(packet, 8, packet, 24, this.srcPort, this.dstPort, this.protocol);
  }
}

export interface ClassifyOptions {
  /** Verify IPv4 header and transport checksums (default true); false when the device vouches for them. */
  verifyChecksums?: boolean;
}

const DEFAULTS: ClassifyOptions = {};
const transport: Ipv6Transport = { protocol: 0, offset: 0 };

/** Classifies `packet` into `info`; returns null if it is a well-formed TCP, UDP or ICMP packet, else why not. */
export function classify(packet: Uint8Array, info: PacketInfo, options = DEFAULTS): DropReason | null {
  const verify = options.verifyChecksums !== false;
  const len = packet.length;
  if (len < 1) return "truncated";
  const version = packet[0]! >> 4;
  let end: number, off: number, protocol: number, pseudo: number;
  if (version === 4) {
    if (len < 20) return "truncated";
    const hl = (packet[0]! & 0x0f) * 4;
    if (hl < 20) return "badHeaderLength";
    if (hl > len) return "truncated";
    end = read16(packet, 2);
    if (end < hl) return "badLength";
    if (end > len) return "truncated";
    if (verify && foldSum(sumWords(packet, 0, hl)) !== 0xffff) return "badChecksum";
    if ((read16(packet, 6) & 0x3fff) !== 0) return "fragment";
    protocol = packet[9]!;
    off = hl;
    info.src4 = read32(packet, 12);
    info.dst4 = read32(packet, 16);
    info.ttl = packet[8]!;
    pseudo = sumWords(packet, 12, 20, protocol + end - off);
  } else if (version === 6) {
    if (len < IPV6_HEADER_LEN) return "truncated";
    const checked = checkIpv6(packet);
    if (checked !== null) return checked;
    const dropped = findIpv6Transport(packet, transport);
    if (dropped !== null) return dropped;
    end = IPV6_HEADER_LEN + read16(packet, 4);
    protocol = transport.protocol;
    off = transport.offset;
    info.src4 = 0;
    info.dst4 = 0;
    info.ttl = packet[7]!;
    const l4Len = end - off;
    pseudo = sumWords(packet, 8, 40, protocol + (l4Len >>> 16) + (l4Len & 0xffff));
  } else {
    return "badVersion";
  }
  info.version = version;
  info.protocol = protocol;
  info.ipLength = end;
  info.transportOffset = off;
  info.srcPort = 0;
  info.dstPort = 0;
  info.tcpFlags = 0;
  info.icmpType = 0;
  info.icmpCode = 0;
  switch (protocol) {
    case IpProtocol.TCP: {
      if (end - off < 20) return "truncated";
      const hl = (packet[off + 12]! >> 4) * 4;
      if (hl < 20) return "badHeaderLength";
      if (off + hl > end) return "truncated";
      if (verify && foldSum(sumWords(packet, off, end, pseudo)) !== 0xffff) return "badChecksum";
      info.srcPort = read16(packet, off);
      info.dstPort = read16(packet, off + 2);
      info.tcpFlags = packet[off + 13]!;
      info.payloadOffset = off + hl;
      info.payloadEnd = end;
      return null;
    }
    case IpProtocol.UDP: {
      if (end - off < 8) return "truncated";
      const udpLen = read16(packet, off + 4);
      if (udpLen < 8) return "badLength";
      if (off + udpLen > end) return "truncated";
      const sum = read16(packet, off + 6);
      if (verify && (sum !== 0 || version === 6)) {
        // The pseudo-header counts the UDP length field, not the IP one (RFC 768); they differ with padding.
        const p = pseudo - (end - off) + udpLen;
        if (sum === 0 || foldSum(sumWords(packet, off, off + udpLen, p)) !== 0xffff) return "badChecksum";
      }
      info.srcPort = read16(packet, off);
      info.dstPort = read16(packet, off + 2);
      info.payloadOffset = off + 8;
      info.payloadEnd = off + udpLen;
      return null;
    }
    case IpProtocol.ICMP:
    case IpProtocol.ICMPV6: {
      if ((protocol === IpProtocol.ICMP) !== (version === 4)) return "unsupportedProtocol";
      if (end - off < 8) return "truncated";
      if (verify && foldSum(sumWords(packet, off, end, version === 6 ? pseudo : 0)) !== 0xffff) return "badChecksum";
      info.icmpType = packet[off]!;
      info.icmpCode = packet[off + 1]!;
      info.payloadOffset = off + 8;
      info.payloadEnd = end;
      return null;
    }
    default:
      return "unsupportedProtocol";
  }
}
