/**
 * The Internet checksum (RFC 1071): the one's complement of the one's complement sum of 16-bit big-endian words.
 *
 * Sums are carried unfolded as plain numbers (`sumWords`), then folded and complemented once (`finishChecksum`),
 * so a pseudo-header and a payload can be summed in pieces without copying. Incremental updates follow RFC 1624.
 */

/**
 * Adds the big-endian 16-bit words of `buf[start, end)` to `acc` without folding; an odd last byte is padded
 * with a zero byte (RFC 1071 section 4.1). The result stays exact for any packet size (below 2^53).
 */
export function sumWords(buf: Uint8Array, start: number, end: number, acc = 0): number {
  let i = start;
  const even = end - ((end - start) & 1);
  // Four words per iteration; a 64 KiB buffer sums to < 2^32, so no folding is needed inside the loop.
  for (const stop = even - 6; i < stop; i += 8) {
    acc += ((buf[i]! << 8) | buf[i + 1]!) + ((buf[i + 2]! << 8) | buf[i + 3]!) +
      ((buf[i + 4]! << 8) | buf[i + 5]!) + ((buf[i + 6]! << 8) | buf[i + 7]!);
  }
  for (; i < even; i += 2) acc += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) acc += buf[i]! << 8;
  return acc;
}

/** Folds an unfolded sum to 16 bits (end-around carry), without complementing it. */
export function foldSum(acc: number): number {
  // Two rounds of 32-bit folding suffice below 2^32; the first division handles larger sums exactly.
  let s = acc > 0xffffffff ? (acc % 0x10000) + Math.floor(acc / 0x10000) : acc;
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** Folds and complements an unfolded sum: the value to store in a checksum field. */
export function finishChecksum(acc: number): number {
  return ~foldSum(acc) & 0xffff;
}

/** The checksum of `buf[start, end)` plus an unfolded `initial` sum (e.g. a pseudo-header's). */
export function checksum(buf: Uint8Array, start = 0, end = buf.length, initial = 0): number {
  return finishChecksum(sumWords(buf, start, end, initial));
}

/** True if `buf[start, end)` (checksum field included) plus `initial` sums to 0xffff, i.e. it verifies. */
export function verifyChecksum(buf: Uint8Array, start: number, end: number, initial = 0): boolean {
  return foldSum(sumWords(buf, start, end, initial)) === 0xffff;
}

/** Unfolded sum of the IPv4 pseudo-header (RFC 9293 section 3.1, RFC 768) for uint32 addresses. */
export function pseudoHeaderSumV4(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

/** Unfolded sum of the IPv6 pseudo-header (RFC 8200 section 8.1) for two 16-byte addresses. */
export function pseudoHeaderSumV6(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): number {
  return sumWords(dst, 0, 16, sumWords(src, 0, 16, protocol + (length >>> 16) + (length & 0xffff)));
}

/**
 * RFC 1624 section 3, equation 3: the new checksum after one 16-bit word of the covered data changed from
 * `oldWord` to `newWord`: HC' = ~(~HC + ~m + m'). Avoids the -0 pitfall of equation 2.
 */
export function updateChecksum(oldChecksum: number, oldWord: number, newWord: number): number {
  const s = (~oldChecksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  return ~foldSum(s) & 0xffff;
}

/** `updateChecksum` for a 32-bit field (an IPv4 address, a sequence number) changed from `oldValue` to `newValue`. */
export function updateChecksum32(oldChecksum: number, oldValue: number, newValue: number): number {
  const s = (~oldChecksum & 0xffff) + (~oldValue >>> 16 & 0xffff) + (~oldValue & 0xffff) + (newValue >>> 16) +
    (newValue & 0xffff);
  return ~foldSum(s) & 0xffff;
}
