/**
 * TCP header (RFC 9293 section 3.1) and options (MSS, RFC 9293 section 3.7.1; window scale and timestamps,
 * RFC 7323; SACK-permitted and SACK, RFC 2018): a view over the bytes, and parse/emit of the shared `TcpRepr`.
 *
 * Checksums take the unfolded pseudo-header sum (`pseudoHeaderSumV4/V6` in checksum.ts) as a parameter, or null
 * to skip verification / leave the field for the device to fill.
 */
import { read16, read32, write16, write32 } from "./_bytes.ts";
import { finishChecksum, foldSum, sumWords } from "./checksum.ts";
import type { DropReason } from "./drop.ts";
import type { TcpRepr } from "./tcp_repr.ts";

export const TCP_HEADER_LEN = 20;
export const TCP_MAX_HEADER_LEN = 60;

/** Option kinds (IANA "TCP Option Kind Numbers"). */
export const TcpOption = {
  EOL: 0,
  NOP: 1,
  MSS: 2,
  WINDOW_SCALE: 3,
  SACK_PERMITTED: 4,
  SACK: 5,
  TIMESTAMPS: 8,
} as const;

/** A view over a TCP segment: exactly the header and payload (the IP layer has cut off any trailer). */
export class TcpSegment {
  constructor(readonly buffer: Uint8Array) {}

  /** Validates that the header and its options fit, after which no accessor reads out of bounds. */
  static newChecked(buffer: Uint8Array): TcpSegment | DropReason {
    if (buffer.length < TCP_HEADER_LEN) return "truncated";
    const hl = (buffer[12]! >> 4) * 4;
    if (hl < TCP_HEADER_LEN) return "badHeaderLength";
    if (hl > buffer.length) return "truncated";
    return new TcpSegment(buffer);
  }

  get srcPort(): number {
    return read16(this.buffer, 0);
  }
  get dstPort(): number {
    return read16(this.buffer, 2);
  }
  get seq(): number {
    return read32(this.buffer, 4);
  }
  get ack(): number {
    return read32(this.buffer, 8);
  }
  get headerLen(): number {
    return (this.buffer[12]! >> 4) * 4;
  }
  /** The eight flag bits of `TcpFlags` (the NS bit of RFC 3540, historic, is not included). */
  get flags(): number {
    return this.buffer[13]!;
  }
  get window(): number {
    return read16(this.buffer, 14);
  }
  get checksum(): number {
    return read16(this.buffer, 16);
  }
  get urgent(): number {
    return read16(this.buffer, 18);
  }
  get options(): Uint8Array {
    return this.buffer.subarray(TCP_HEADER_LEN, this.headerLen);
  }
  get payload(): Uint8Array {
    return this.buffer.subarray(this.headerLen);
  }

  /** True if the checksum verifies against the unfolded pseudo-header sum. */
  verifyChecksum(pseudoSum: number): boolean {
    return foldSum(sumWords(this.buffer, 0, this.buffer.length, pseudoSum)) === 0xffff;
  }
  /** Computes and stores the checksum. */
  fillChecksum(pseudoSum: number): void {
    write16(this.buffer, 16, 0);
    write16(this.buffer, 16, finishChecksum(sumWords(this.buffer, 0, this.buffer.length, pseudoSum)));
  }
}

/**
 * Reads the repr of a checked segment. With a pseudo-header sum the checksum is verified (`badChecksum`);
 * with null it is not. Options are read like Linux's tcp_parse_options (net/ipv4/tcp_input.c): a malformed
 * length ends option parsing without dropping the segment, a known option of the wrong size and unknown kinds
 * are skipped. `payload` is a subarray of the segment.
 */
export function parseTcp(segment: TcpSegment, pseudoSum: number | null): TcpRepr | DropReason {
  if (pseudoSum !== null && !segment.verifyChecksum(pseudoSum)) return "badChecksum";
  const repr: TcpRepr = {
    srcPort: segment.srcPort,
    dstPort: segment.dstPort,
    seq: segment.seq,
    ack: segment.ack,
    flags: segment.flags,
    window: segment.window,
    urgent: segment.urgent,
    payload: segment.payload,
  };
  const b = segment.buffer;
  const end = segment.headerLen;
  let i = TCP_HEADER_LEN;
  while (i < end) {
    const kind = b[i]!;
    if (kind === TcpOption.EOL) break;
    if (kind === TcpOption.NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) break;
    const len = b[i + 1]!;
    if (len < 2 || i + len > end) break;
    switch (kind) {
      case TcpOption.MSS:
        if (len === 4) repr.mss = read16(b, i + 2);
        break;
      case TcpOption.WINDOW_SCALE:
        if (len === 3) repr.windowScale = b[i + 2]!;
        break;
      case TcpOption.SACK_PERMITTED:
        if (len === 2) repr.sackPermitted = true;
        break;
      case TcpOption.SACK:
        if (len >= 10 && (len - 2) % 8 === 0) {
          const blocks: [number, number][] = [];
          for (let j = i + 2; j < i + len; j += 8) blocks.push([read32(b, j), read32(b, j + 4)]);
          repr.sackBlocks = blocks;
        }
        break;
      case TcpOption.TIMESTAMPS:
        if (len === 10) repr.timestamps = [read32(b, i + 2), read32(b, i + 6)];
        break;
    }
    i += len;
  }
  return repr;
}

/**
 * The header length `emitTcp` writes: options are laid out as Linux does (tcp_options_write in
 * net/ipv4/tcp_output.c), each group 4-byte aligned: MSS; SACK-permitted and timestamps together
 * (or each behind two NOPs); NOP + window scale; two NOPs + SACK blocks.
 */
export function tcpHeaderLen(repr: TcpRepr): number {
  let n = TCP_HEADER_LEN;
  if (repr.mss !== undefined) n += 4;
  if (repr.timestamps !== undefined) n += 12;
  if (repr.sackPermitted === true && repr.timestamps === undefined) n += 4;
  if (repr.windowScale !== undefined) n += 4;
  if (repr.sackBlocks !== undefined && repr.sackBlocks.length > 0) n += 4 + 8 * repr.sackBlocks.length;
  return n;
}

/** Header, options and payload. */
export function tcpBufferLen(repr: TcpRepr): number {
  return tcpHeaderLen(repr) + repr.payload.length;
}

/**
 * Writes header, options and payload into `segment` (whose buffer must be exactly `tcpBufferLen(repr)` long,
 * since the checksum covers all of it). With a pseudo-header sum the checksum is computed; with null the field
 * is left zero, for callers that fill it later (checksum offload). Throws RangeError
 * when the options exceed 40 bytes, more than 4 SACK blocks are given, or the buffer has the wrong size.
 */
export function emitTcp(repr: TcpRepr, segment: TcpSegment, pseudoSum: number | null): void {
  const b = segment.buffer;
  const len = tcpBufferLen(repr);
  if (b.length !== len) throw new RangeError(`A ${len}-byte TCP segment cannot fill a ${b.length}-byte buffer`);
  const end = writeTcpAt(repr, b, 0);
  if (pseudoSum !== null) write16(b, 16, finishChecksum(sumWords(b, 0, end, pseudoSum)));
}

/**
 * Internal to net/wire (the packet builders use it): writes header, options and payload at `offset` of `b`
 * with a zero checksum, and returns the end offset. Throws RangeError like `emitTcp`.
 */
export function writeTcpAt(repr: TcpRepr, b: Uint8Array, offset: number): number {
  const hl = tcpHeaderLen(repr);
  if (hl > TCP_MAX_HEADER_LEN) throw new RangeError(`TCP options need ${hl - TCP_HEADER_LEN} bytes, more than 40`);
  if (repr.sackBlocks !== undefined && repr.sackBlocks.length > 4) {
    throw new RangeError(`A SACK option holds at most 4 blocks, not ${repr.sackBlocks.length}`);
  }
  const end = offset + hl + repr.payload.length;
  if (b.length < end) {
    throw new RangeError(`Cannot write a ${end - offset}-byte TCP segment at ${offset} of ${b.length}`);
  }
  const o = offset;
  write16(b, o, repr.srcPort);
  write16(b, o + 2, repr.dstPort);
  write32(b, o + 4, repr.seq);
  write32(b, o + 8, repr.ack);
  b[o + 12] = (hl / 4) << 4;
  b[o + 13] = repr.flags;
  write16(b, o + 14, repr.window);
  write16(b, o + 16, 0);
  write16(b, o + 18, repr.urgent);
  let i = o + TCP_HEADER_LEN;
  if (repr.mss !== undefined) {
    b[i] = TcpOption.MSS;
    b[i + 1] = 4;
    write16(b, i + 2, repr.mss);
    i += 4;
  }
  if (repr.timestamps !== undefined) {
    if (repr.sackPermitted === true) {
      b[i] = TcpOption.SACK_PERMITTED;
      b[i + 1] = 2;
    } else {
      b[i] = TcpOption.NOP;
      b[i + 1] = TcpOption.NOP;
    }
    b[i + 2] = TcpOption.TIMESTAMPS;
    b[i + 3] = 10;
    write32(b, i + 4, repr.timestamps[0]);
    write32(b, i + 8, repr.timestamps[1]);
    i += 12;
  } else if (repr.sackPermitted === true) {
    b[i] = TcpOption.NOP;
    b[i + 1] = TcpOption.NOP;
    b[i + 2] = TcpOption.SACK_PERMITTED;
    b[i + 3] = 2;
    i += 4;
  }
  if (repr.windowScale !== undefined) {
    b[i] = TcpOption.NOP;
    b[i + 1] = TcpOption.WINDOW_SCALE;
    b[i + 2] = 3;
    b[i + 3] = repr.windowScale;
    i += 4;
  }
  if (repr.sackBlocks !== undefined && repr.sackBlocks.length > 0) {
    b[i] = TcpOption.NOP;
    b[i + 1] = TcpOption.NOP;
    b[i + 2] = TcpOption.SACK;
    b[i + 3] = 2 + 8 * repr.sackBlocks.length;
    i += 4;
    for (const [left, right] of repr.sackBlocks) {
      write32(b, i, left);
      write32(b, i + 4, right);
      i += 8;
    }
  }
  b.set(repr.payload, o + hl);
  return end;
}
