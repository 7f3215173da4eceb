/**
 * UDP header (RFC 768): a view and a repr. Checksums take the unfolded pseudo-header sum as a parameter, or null.
 * A zero checksum means "none" over IPv4 (RFC 768) and is invalid over IPv6 (RFC 8200 section 8.1).
 */
import { read16, write16 } from "./_bytes.ts";
import { finishChecksum, foldSum, sumWords } from "./checksum.ts";
import type { DropReason } from "./drop.ts";

export const UDP_HEADER_LEN = 8;

/** A view over a UDP datagram whose `length` field has been checked against the buffer. */
export class UdpDatagram {
  constructor(readonly buffer: Uint8Array) {}

  /** Validates the length field: at least 8 and at most the buffer (bytes after it are ignored). */
  static newChecked(buffer: Uint8Array): UdpDatagram | DropReason {
    if (buffer.length < UDP_HEADER_LEN) return "truncated";
    const len = read16(buffer, 4);
    if (len < UDP_HEADER_LEN) return "badLength";
    if (len > buffer.length) return "truncated";
    return new UdpDatagram(buffer);
  }

  get srcPort(): number {
    return read16(this.buffer, 0);
  }
  get dstPort(): number {
    return read16(this.buffer, 2);
  }
  get length(): number {
    return read16(this.buffer, 4);
  }
  get checksum(): number {
    return read16(this.buffer, 6);
  }
  get payload(): Uint8Array {
    return this.buffer.subarray(UDP_HEADER_LEN, this.length);
  }

  /** True if the checksum verifies against the unfolded pseudo-header sum; a zero checksum does not. */
  verifyChecksum(pseudoSum: number): boolean {
    return this.checksum !== 0 && foldSum(sumWords(this.buffer, 0, this.length, pseudoSum)) === 0xffff;
  }
  /** Computes and stores the checksum, sending 0xffff for a computed zero (RFC 768). */
  fillChecksum(pseudoSum: number): void {
    write16(this.buffer, 6, 0);
    write16(this.buffer, 6, finishChecksum(sumWords(this.buffer, 0, this.length, pseudoSum)) || 0xffff);
  }
}

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  /** A subarray of the datagram when parsed. */
  payload: Uint8Array;
}

export interface UdpChecksumOptions {
  /** Unfolded pseudo-header sum, or null to skip verification. */
  pseudoSum: number | null;
  /** Accept a zero checksum as "not computed": true for IPv4 (RFC 768), false for IPv6 (RFC 8200). */
  allowZero: boolean;
}

export function parseUdp(datagram: UdpDatagram, options: UdpChecksumOptions): UdpRepr | DropReason {
  if (options.pseudoSum !== null) {
    const zeroOk = options.allowZero && datagram.checksum === 0;
    if (!zeroOk && !datagram.verifyChecksum(options.pseudoSum)) return "badChecksum";
  }
  return { srcPort: datagram.srcPort, dstPort: datagram.dstPort, payload: datagram.payload };
}

export function udpBufferLen(repr: UdpRepr): number {
  return UDP_HEADER_LEN + repr.payload.length;
}

/** Writes header and payload; computes the checksum unless `pseudoSum` is null (then it is zero). */
export function emitUdp(repr: UdpRepr, datagram: UdpDatagram, pseudoSum: number | null): void {
  writeUdpAt(repr, datagram.buffer, 0);
  if (pseudoSum !== null) datagram.fillChecksum(pseudoSum);
}

/**
 * Internal to net/wire (the packet builders use it): writes header and payload at `offset` with a zero
 * checksum and returns the end offset. Throws RangeError for a too long datagram or a short buffer.
 */
export function writeUdpAt(repr: UdpRepr, b: Uint8Array, offset: number): number {
  const len = udpBufferLen(repr);
  if (len > 0xffff) throw new RangeError(`A UDP datagram cannot be ${len} bytes long`);
  if (b.length < offset + len) {
    throw new RangeError(`Cannot write a ${len}-byte UDP datagram at ${offset} of ${b.length}`);
  }
  write16(b, offset, repr.srcPort);
  write16(b, offset + 2, repr.dstPort);
  write16(b, offset + 4, len);
  write16(b, offset + 6, 0);
  b.set(repr.payload, offset + UDP_HEADER_LEN);
  return offset + len;
}
