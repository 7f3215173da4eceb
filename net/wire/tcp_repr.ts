/**
 * The meaningful fields of a TCP segment, shared by the codec (`net/wire/tcp.ts`, which parses and emits them)
 * and the endpoint (`net/tcp/`, which consumes and produces them). Addresses live in the IP layer, not here.
 *
 * Sequence and acknowledgment numbers are unsigned 32-bit values (0 .. 2^32-1); compare them only with the
 * helpers in `net/tcp/seq.ts`.
 */
export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** Bit set of the `TcpFlags` below. */
  flags: number;
  /** The raw 16-bit window field, before window scaling (RFC 7323 section 2.3). */
  window: number;
  urgent: number;
  /** MSS option (RFC 9293 section 3.7.1), only on SYN segments. */
  mss?: number;
  /** Window scale shift count (RFC 7323 section 2.2), only on SYN segments. */
  windowScale?: number;
  /** SACK-permitted option (RFC 2018 section 2), only on SYN segments. */
  sackPermitted?: boolean;
  /** SACK blocks as [left, right) sequence pairs (RFC 2018 section 3), at most 4. */
  sackBlocks?: ReadonlyArray<readonly [number, number]>;
  /** Timestamps option (RFC 7323 section 3): [TSval, TSecr]. */
  timestamps?: readonly [number, number];
  /** The segment's data: a subarray of the packet it came from, never copied by the parser. */
  payload: Uint8Array;
}

/** TCP header flag bits (RFC 9293 section 3.1). */
export const TcpFlags = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;
