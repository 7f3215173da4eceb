/**
 * IPv4 header (RFC 791 section 3.1): a view over the bytes and a repr of its meaningful fields.
 * Fragments are detected (`isFragment`) and refused by `parseIpv4`: tp does not reassemble.
 */
import { read16, read32, write16, write32 } from "./_bytes.ts";
import type { Ipv4Address } from "./address.ts";
import { checksum, verifyChecksum } from "./checksum.ts";
import type { DropReason } from "./drop.ts";

export const IPV4_HEADER_LEN = 20;
/** The largest header: IHL is 4 bits of 32-bit words (RFC 791 section 3.1). */
export const IPV4_MAX_HEADER_LEN = 60;

/** A view over an IPv4 packet. Use `newChecked` for untrusted bytes; `new` only over a buffer you sized. */
export class Ipv4Packet {
  constructor(readonly buffer: Uint8Array) {}

  /**
   * Validates the version, IHL and total length against the buffer, after which no accessor reads out of
   * bounds. Bytes after the total length (link padding) are ignored. Does not verify the checksum.
   */
  static newChecked(buffer: Uint8Array): Ipv4Packet | DropReason {
    if (buffer.length < IPV4_HEADER_LEN) return "truncated";
    if (buffer[0]! >> 4 !== 4) return "badVersion";
    const hl = (buffer[0]! & 0x0f) * 4;
    if (hl < IPV4_HEADER_LEN) return "badHeaderLength";
    if (hl > buffer.length) return "truncated";
    const total = read16(buffer, 2);
    if (total < hl) return "badLength";
    if (total > buffer.length) return "truncated";
    return new Ipv4Packet(buffer);
  }

  get version(): number {
    return this.buffer[0]! >> 4;
  }
  get headerLen(): number {
    return (this.buffer[0]! & 0x0f) * 4;
  }
  /** DSCP and ECN, the former type-of-service byte (RFC 2474, RFC 3168). */
  get tos(): number {
    return this.buffer[1]!;
  }
  get totalLength(): number {
    return read16(this.buffer, 2);
  }
  get ident(): number {
    return read16(this.buffer, 4);
  }
  get dontFragment(): boolean {
    return (this.buffer[6]! & 0x40) !== 0;
  }
  get moreFragments(): boolean {
    return (this.buffer[6]! & 0x20) !== 0;
  }
  /** The fragment offset in bytes. */
  get fragmentOffset(): number {
    return (read16(this.buffer, 6) & 0x1fff) * 8;
  }
  /** True for any fragment of a larger datagram (more-fragments set or a non-zero offset). */
  get isFragment(): boolean {
    return (read16(this.buffer, 6) & 0x3fff) !== 0;
  }
  get ttl(): number {
    return this.buffer[8]!;
  }
  get protocol(): number {
    return this.buffer[9]!;
  }
  get checksum(): number {
    return read16(this.buffer, 10);
  }
  get src(): Ipv4Address {
    return read32(this.buffer, 12);
  }
  get dst(): Ipv4Address {
    return read32(this.buffer, 16);
  }
  get options(): Uint8Array {
    return this.buffer.subarray(IPV4_HEADER_LEN, this.headerLen);
  }
  get payload(): Uint8Array {
    return this.buffer.subarray(this.headerLen, this.totalLength);
  }

  verifyChecksum(): boolean {
    return verifyChecksum(this.buffer, 0, this.headerLen);
  }
  fillChecksum(): void {
    write16(this.buffer, 10, 0);
    write16(this.buffer, 10, checksum(this.buffer, 0, this.headerLen));
  }
}

/** The meaningful fields of an IPv4 header. `options` are raw bytes, a multiple of 4 long, at most 40. */
export interface Ipv4Repr {
  src: Ipv4Address;
  dst: Ipv4Address;
  protocol: number;
  ttl: number;
  tos: number;
  ident: number;
  dontFragment: boolean;
  options: Uint8Array;
  /** Length of what follows the header. */
  payloadLen: number;
}

export interface Ipv4ParseOptions {
  /** Verify the header checksum (default true); false when the device already did. */
  verifyChecksum?: boolean;
}

/** Reads the repr of a checked packet; fragments and bad checksums are drop reasons. */
export function parseIpv4(packet: Ipv4Packet, options: Ipv4ParseOptions = {}): Ipv4Repr | DropReason {
  if (options.verifyChecksum !== false && !packet.verifyChecksum()) return "badChecksum";
  if (packet.isFragment) return "fragment";
  return {
    src: packet.src,
    dst: packet.dst,
    protocol: packet.protocol,
    ttl: packet.ttl,
    tos: packet.tos,
    ident: packet.ident,
    dontFragment: packet.dontFragment,
    options: packet.options,
    payloadLen: packet.totalLength - packet.headerLen,
  };
}

/** The header length `emitIpv4` writes. */
export function ipv4HeaderLen(repr: Ipv4Repr): number {
  return IPV4_HEADER_LEN + repr.options.length;
}

/** Header plus payload. */
export function ipv4BufferLen(repr: Ipv4Repr): number {
  return ipv4HeaderLen(repr) + repr.payloadLen;
}

/**
 * Writes the header (not the payload) into `packet`, checksum included unless `computeChecksum` is false
 * (then the field is zero). Throws RangeError on misuse: bad options length, a buffer too short, a too long packet.
 */
export function emitIpv4(repr: Ipv4Repr, packet: Ipv4Packet, computeChecksum = true): void {
  const b = packet.buffer;
  const optLen = repr.options.length;
  if (optLen % 4 !== 0 || optLen > IPV4_MAX_HEADER_LEN - IPV4_HEADER_LEN) {
    throw new RangeError(`IPv4 options must be a multiple of 4 bytes up to 40, not ${optLen}`);
  }
  const hl = IPV4_HEADER_LEN + optLen;
  const total = hl + repr.payloadLen;
  if (total > 0xffff) throw new RangeError(`An IPv4 packet cannot be ${total} bytes long`);
  if (b.length < hl) throw new RangeError(`Cannot write a ${hl}-byte IPv4 header into ${b.length} bytes`);
  b[0] = 0x40 | (hl >> 2);
  b[1] = repr.tos;
  write16(b, 2, total);
  write16(b, 4, repr.ident);
  write16(b, 6, repr.dontFragment ? 0x4000 : 0);
  b[8] = repr.ttl;
  b[9] = repr.protocol;
  write16(b, 10, 0);
  write32(b, 12, repr.src);
  write32(b, 16, repr.dst);
  b.set(repr.options, IPV4_HEADER_LEN);
  if (computeChecksum) write16(b, 10, checksum(b, 0, hl));
}
