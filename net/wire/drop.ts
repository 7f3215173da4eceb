/**
 * Why a packet from the TUN was not accepted. Every reason is a counter name: the router counts drops, it never
 * throws on them (STYLE.md, "Drops are counted, not thrown").
 */
export const DROP_REASONS = [
  /** Fewer bytes than a header or a length field says. */
  "truncated",
  /** The IP version nibble is neither 4 nor 6. */
  "badVersion",
  /** An IPv4 IHL below 5 or a TCP data offset below 5. */
  "badHeaderLength",
  /** A length field smaller than the header it counts, or an unsupported jumbogram. */
  "badLength",
  /** An IPv4 header, TCP, UDP or ICMP checksum that does not verify. */
  "badChecksum",
  /** An IPv4 or IPv6 fragment: tp does not reassemble (the kernel's path MTU discovery keeps them rare). */
  "fragment",
  /** A malformed, misplaced or too long chain of IPv6 extension headers. */
  "badExtensionHeader",
  /** A transport protocol other than TCP, UDP, ICMP and ICMPv6 (or ESP, or "no next header"). */
  "unsupportedProtocol",
  /** An ICMP message type the codec does not model. */
  "unsupportedIcmpType",
] as const;

export type DropReason = typeof DROP_REASONS[number];
