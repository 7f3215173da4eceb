/**
 * The Internet checksum (RFC 1071), just what the TUN offload path needs to finish checksums the kernel left
 * partial (virtio_net_hdr NEEDS_CSUM) and to checksum segments it splits. `ffi/` cannot import `net/wire/`.
 */

/** Adds the 16-bit big-endian words of `bytes[start, end)` to `sum` (no folding). An odd last byte is padded. */
export function sumWords(bytes: Uint8Array, start: number, end: number, sum = 0): number {
  let i = start;
  sum = fold(sum);
  // Fold every 2^15 words (64 KiB) so `sum` stays below 2^31 and bit operations stay exact.
  while (i + 1 < end) {
    const stop = Math.min(end - 1, i + 65536);
    for (; i < stop; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (i < end) sum += bytes[i]! << 8;
  return sum;
}

/** Folds a sum of words into 16 bits (not complemented). */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** The one's-complement checksum of `bytes[start, end)` plus `initial`, ready to store. */
export function checksum(bytes: Uint8Array, start: number, end: number, initial = 0): number {
  return ~fold(sumWords(bytes, start, end, initial)) & 0xffff;
}

/**
 * The sum of an IPv4 or IPv6 pseudo-header (RFC 793 3.1, RFC 8200 8.1) for the packet starting at `ip[0]`, whose
 * transport header starts at `l4Start`, with `l4Length` bytes of transport header and payload.
 */
export function pseudoHeaderSum(ip: Uint8Array, protocol: number, l4Length: number): number {
  const version = ip[0]! >> 4;
  let sum = protocol + (l4Length & 0xffff) + Math.floor(l4Length / 0x10000);
  if (version === 4) sum = sumWords(ip, 12, 20, sum);
  else sum = sumWords(ip, 8, 40, sum);
  return sum;
}
