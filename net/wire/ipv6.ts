/**
 * IPv6 fixed header (RFC 8200 section 3) as a view and a repr, and the walk over extension headers
 * (RFC 8200 section 4) from the fixed header to the transport header.
 */
import { read16, read32, write16, write32 } from "./_bytes.ts";
import type { Ipv6Address } from "./address.ts";
import type { DropReason } from "./drop.ts";
import { IpProtocol } from "./ip_protocol.ts";

export const IPV6_HEADER_LEN = 40;
/** More extension headers than this is treated as an attack, not a packet (Linux has no fixed limit). */
export const IPV6_MAX_EXTENSION_HEADERS = 8;

/** A view over an IPv6 packet. Use `newChecked` for untrusted bytes; `new` only over a buffer you sized. */
export class Ipv6Packet {
  constructor(readonly buffer: Uint8Array) {}

  /**
   * Validates the version and payload length against the buffer; trailing bytes are ignored. Jumbograms
   * (payload length 0 with a hop-by-hop header, RFC 2675) are refused as `badLength`.
   */
  static newChecked(buffer: Uint8Array): Ipv6Packet | DropReason {
    return checkIpv6(buffer) ?? new Ipv6Packet(buffer);
  }

  get version(): number {
    return this.buffer[0]! >> 4;
  }
  get trafficClass(): number {
    return (read16(this.buffer, 0) >> 4) & 0xff;
  }
  get flowLabel(): number {
    return read32(this.buffer, 0) & 0xfffff;
  }
  get payloadLen(): number {
    return read16(this.buffer, 4);
  }
  get nextHeader(): number {
    return this.buffer[6]!;
  }
  get hopLimit(): number {
    return this.buffer[7]!;
  }
  /** The source address: a subarray of the packet, not a copy. */
  get src(): Ipv6Address {
    return this.buffer.subarray(8, 24);
  }
  get dst(): Ipv6Address {
    return this.buffer.subarray(24, 40);
  }
  /** Everything after the fixed header, extension headers included. */
  get payload(): Uint8Array {
    return this.buffer.subarray(IPV6_HEADER_LEN, IPV6_HEADER_LEN + this.payloadLen);
  }
}

/** The checks of `Ipv6Packet.newChecked` without making a view: null if the bytes pass. */
export function checkIpv6(buffer: Uint8Array): DropReason | null {
  if (buffer.length < IPV6_HEADER_LEN) return "truncated";
  if (buffer[0]! >> 4 !== 6) return "badVersion";
  const payloadLen = read16(buffer, 4);
  if (payloadLen === 0 && buffer[6] === IpProtocol.HOP_BY_HOP) return "badLength";
  if (IPV6_HEADER_LEN + payloadLen > buffer.length) return "truncated";
  return null;
}

/** Where the transport header starts, as found by `findIpv6Transport`. Reuse one across packets. */
export interface Ipv6Transport {
  /** The upper-layer protocol number (e.g. 6 for TCP). */
  protocol: number;
  /** Offset of the transport header from the start of the packet. */
  offset: number;
}

/**
 * Walks the extension headers of a checked IPv6 packet (a view, or bytes that passed `Ipv6Packet.newChecked`)
 * up to the transport header, filling `out`. Returns null,
 * or why the packet is dropped: a real fragment (an atomic fragment, offset 0 without more-fragments, is
 * processed as a whole packet per RFC 6946), a hop-by-hop header not first (RFC 8200 section 4.1), a chain
 * longer than `IPV6_MAX_EXTENSION_HEADERS`, ESP or "no next header" (`unsupportedProtocol`).
 */
export function findIpv6Transport(packet: Ipv6Packet | Uint8Array, out: Ipv6Transport): DropReason | null {
  const b = packet instanceof Uint8Array ? packet : packet.buffer;
  // Bounded by the buffer too, so that a truncated quote (ICMP error builders) is walked safely.
  const end = Math.min(IPV6_HEADER_LEN + read16(b, 4), b.length);
  let next = b[6]!;
  let off = IPV6_HEADER_LEN;
  for (let n = 0;; n++) {
    let len: number;
    switch (next) {
      case IpProtocol.HOP_BY_HOP:
        if (n !== 0) return "badExtensionHeader";
        if (off + 2 > end) return "truncated";
        len = (b[off + 1]! + 1) * 8;
        break;
      case IpProtocol.IPV6_ROUTING:
      case IpProtocol.IPV6_DEST_OPTS:
        if (off + 2 > end) return "truncated";
        len = (b[off + 1]! + 1) * 8;
        break;
      case IpProtocol.IPV6_FRAGMENT:
        if (off + 8 > end) return "truncated";
        if ((read16(b, off + 2) & 0xfff9) !== 0) return "fragment";
        len = 8;
        break;
      case IpProtocol.AH:
        if (off + 2 > end) return "truncated";
        len = (b[off + 1]! + 2) * 4; // RFC 4302 section 2.2: in 32-bit words, minus 2
        break;
      case IpProtocol.ESP:
      case IpProtocol.IPV6_NO_NEXT:
        return "unsupportedProtocol";
      default:
        out.protocol = next;
        out.offset = off;
        return null;
    }
    if (n >= IPV6_MAX_EXTENSION_HEADERS) return "badExtensionHeader";
    if (off + len > end) return "truncated";
    next = b[off]!;
    off += len;
  }
}

/** The meaningful fields of the fixed header. `src` and `dst` are 16-byte arrays (subarrays when parsed). */
export interface Ipv6Repr {
  src: Ipv6Address;
  dst: Ipv6Address;
  /** The first next-header value (an extension header or the transport protocol). */
  nextHeader: number;
  hopLimit: number;
  trafficClass: number;
  flowLabel: number;
  /** Length of what follows the fixed header. */
  payloadLen: number;
}

export function parseIpv6(packet: Ipv6Packet): Ipv6Repr {
  return {
    src: packet.src,
    dst: packet.dst,
    nextHeader: packet.nextHeader,
    hopLimit: packet.hopLimit,
    trafficClass: packet.trafficClass,
    flowLabel: packet.flowLabel,
    payloadLen: packet.payloadLen,
  };
}

export function ipv6BufferLen(repr: Ipv6Repr): number {
  return IPV6_HEADER_LEN + repr.payloadLen;
}

/** Writes the fixed header (not the payload). Throws RangeError for a short buffer or bad field sizes. */
export function emitIpv6(repr: Ipv6Repr, packet: Ipv6Packet): void {
  const b = packet.buffer;
  if (b.length < IPV6_HEADER_LEN) throw new RangeError(`Cannot write an IPv6 header into ${b.length} bytes`);
  if (repr.src.length !== 16 || repr.dst.length !== 16) throw new RangeError("IPv6 addresses have 16 bytes");
  if (repr.payloadLen > 0xffff) throw new RangeError(`An IPv6 payload cannot be ${repr.payloadLen} bytes long`);
  write32(b, 0, (6 << 28 | (repr.trafficClass & 0xff) << 20 | (repr.flowLabel & 0xfffff)) >>> 0);
  write16(b, 4, repr.payloadLen);
  b[6] = repr.nextHeader;
  b[7] = repr.hopLimit;
  b.set(repr.src, 8);
  b.set(repr.dst, 24);
}
