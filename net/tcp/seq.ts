/**
 * 32-bit sequence number arithmetic (RFC 9293 section 3.4, RFC 1982 serial number arithmetic).
 *
 * Sequence numbers are unsigned 32-bit values that wrap; never compare them with a raw `<`. Two numbers are
 * ordered by the sign of their 32-bit difference, which is meaningful while they are less than 2^31 apart
 * (windows are at most 2^30 bytes, RFC 7323 section 2.3).
 */

/** `a + n` modulo 2^32. `n` may be negative. */
export function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

/** The signed distance from `b` to `a` (`a - b`), in -2^31 .. 2^31-1. */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

/** `a` precedes `b`. */
export function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

/** `a` precedes or equals `b`. */
export function seqLe(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0;
}

/** `a` follows `b`. */
export function seqGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

/** `a` follows or equals `b`. */
export function seqGe(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/** The later of two sequence numbers. */
export function seqMax(a: number, b: number): number {
  return ((a - b) | 0) >= 0 ? a : b;
}

/** The earlier of two sequence numbers. */
export function seqMin(a: number, b: number): number {
  return ((a - b) | 0) <= 0 ? a : b;
}

/** `s` lies in the window `[start, start + len)`; an empty window holds nothing. */
export function seqInWindow(s: number, start: number, len: number): boolean {
  return ((s - start) >>> 0) < len;
}
