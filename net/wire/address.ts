/**
 * Addresses, tp's one module for text <-> address and prefix. The hot path holds an IPv4 address as a uint32 number
 * (network order value: 198.18.0.1 is 0xc6120001) and an IPv6 address as a 16-byte Uint8Array (often a subarray of
 * the packet it came from); rtnetlink and sockets take bytes (`parseAddress`, `Prefix`). String forms are for logs,
 * flags and tests: strict dotted quads, and IPv6 through ipaddr.js (RFC 4291 parsing, RFC 5952 formatting). CIDR
 * arithmetic on prefixes (contain, overlap, subtract) is `net/cidr.ts`'s, built on `parsePrefix`.
 *
 * Pure: it imports nothing else of tp, so every layer, `ffi/` included, may use it.
 *
 * Flow keys: a 5-tuple packed into a short string whose UTF-16 code units are the tuple's 16-bit words, so a
 * `Map<string, Flow>` lookup costs one small string and no formatting. Keys are not for display.
 */
import ipaddr from "ipaddr.js";
import { read16 } from "./_bytes.ts";

export type Ipv4Address = number;
export type Ipv6Address = Uint8Array;
export type IpAddress = Ipv4Address | Ipv6Address;

/** Formats a uint32 IPv4 address in dotted-quad form. */
export function ipv4ToString(a: Ipv4Address): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

/** Parses a strict dotted quad ("198.18.0.1"); throws SyntaxError otherwise. */
export function ipv4FromString(s: string): Ipv4Address {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (m === null) throw new SyntaxError(`Cannot parse IPv4 address "${s}"`);
  let a = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255 || (m[i]!.length > 1 && m[i]!.startsWith("0"))) {
      throw new SyntaxError(`Cannot parse IPv4 address "${s}"`);
    }
    a = a * 256 + octet;
  }
  return a;
}

/** Formats a 16-byte IPv6 address per RFC 5952 ("2001:db8::1"). */
export function ipv6ToString(a: Ipv6Address): string {
  if (a.length !== 16) throw new RangeError(`An IPv6 address has 16 bytes, not ${a.length}`);
  return ipaddr.fromByteArray(Array.from(a)).toString();
}

/** Parses an IPv6 address (any RFC 4291 text form) into a new 16-byte array; throws SyntaxError otherwise. */
export function ipv6FromString(s: string): Ipv6Address {
  if (!ipaddr.IPv6.isValid(s) || s.includes("%")) throw new SyntaxError(`Cannot parse IPv6 address "${s}"`);
  return Uint8Array.from(ipaddr.IPv6.parse(s).toByteArray());
}

/** Formats either kind of address; bytes may also be an IPv4 address's 4 ("198.18.0.1", "2001:db8::1"). */
export function ipToString(a: IpAddress): string {
  if (typeof a === "number") return ipv4ToString(a);
  if (a.length === 4) return ipv4ToString(((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) >>> 0);
  if (a.length === 16) return ipv6ToString(a);
  throw new RangeError(`An IP address has 4 or 16 bytes, not ${a.length}`);
}

/** Parses either kind of address: IPv6 if the text contains a colon. */
export function ipFromString(s: string): IpAddress {
  return s.includes(":") ? ipv6FromString(s) : ipv4FromString(s);
}

/** Parses either kind of address into bytes (4 or 16, network order), for rtnetlink and sockets. */
export function parseAddress(text: string): { family: 4 | 6; address: Uint8Array } {
  let a: IpAddress;
  try {
    a = ipFromString(text);
  } catch {
    throw new SyntaxError(`Cannot parse IP address "${text}"`);
  }
  if (typeof a !== "number") return { family: 6, address: a };
  return { family: 4, address: Uint8Array.of(a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff) };
}

/** A prefix as text gives it: the address as written (host bits kept, 4 or 16 bytes) and its length. */
export interface Prefix {
  family: 4 | 6;
  /** 4 or 16 bytes, network order. */
  address: Uint8Array;
  prefixLength: number;
}

const PREFIX_USAGE = "expected an address and a prefix length, like 198.18.0.0/15 or 2001:db8::/32";

/** Parses "a.b.c.d/n", "x::/n", or a bare address (a host prefix, /32 or /128). */
export function parsePrefix(text: string): Prefix {
  const slash = text.indexOf("/");
  const addrText = slash < 0 ? text : text.slice(0, slash);
  let family: 4 | 6;
  let address: Uint8Array;
  try {
    ({ family, address } = parseAddress(addrText));
  } catch {
    throw new SyntaxError(`Cannot parse CIDR "${text}": ${PREFIX_USAGE}`);
  }
  const bits = family === 4 ? 32 : 128;
  let prefixLength = bits;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > bits) {
      throw new SyntaxError(`Cannot parse CIDR "${text}": the prefix length must be a number from 0 to ${bits}`);
    }
    prefixLength = Number(lenText);
  }
  return { family, address, prefixLength };
}

/** "198.18.0.0/15"; a host prefix keeps its length ("198.18.0.1/32"). */
export function formatPrefix(prefix: Prefix): string {
  return `${ipToString(prefix.address)}/${prefix.prefixLength}`;
}

/** The prefix with host bits cleared. */
export function networkOf(prefix: Prefix): Prefix {
  const address = prefix.address.slice();
  for (let bit = prefix.prefixLength; bit < address.length * 8; bit++) {
    address[bit >> 3]! &= ~(0x80 >> (bit & 7));
  }
  return { family: prefix.family, address, prefixLength: prefix.prefixLength };
}

/** Parses a route destination: a prefix whose host bits are zero (the kernel rejects others). */
export function parseNetwork(text: string): Prefix {
  const prefix = parsePrefix(text);
  const network = networkOf(prefix);
  if (!network.address.every((b, i) => b === prefix.address[i])) {
    throw new SyntaxError(`CIDR "${text}" has host bits set: did you mean "${formatPrefix(network)}"?`);
  }
  return prefix;
}

/** True if two addresses are the same (same family, same bytes). */
export function ipEquals(a: IpAddress, b: IpAddress): boolean {
  if (typeof a === "number" || typeof b === "number") return a === b;
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The flow key of an IPv4 5-tuple. Keys of the two directions of one flow differ. */
export function flowKeyV4(
  src: Ipv4Address,
  srcPort: number,
  dst: Ipv4Address,
  dstPort: number,
  protocol: number,
): string {
  return String.fromCharCode(src >>> 16, src & 0xffff, dst >>> 16, dst & 0xffff, srcPort, dstPort, protocol);
}

/** The flow key of an IPv6 5-tuple; never equal to an IPv4 key (the lengths differ). */
export function flowKeyV6(
  src: Ipv6Address,
  srcPort: number,
  dst: Ipv6Address,
  dstPort: number,
  protocol: number,
): string {
  return flowKeyV6At(src, 0, dst, 0, srcPort, dstPort, protocol);
}

/** The flow key of either family (both addresses must be of the same family). */
export function flowKey(src: IpAddress, srcPort: number, dst: IpAddress, dstPort: number, protocol: number): string {
  if (typeof src === "number") {
    if (typeof dst !== "number") throw new TypeError("Cannot make a flow key from an IPv4 and an IPv6 address");
    return flowKeyV4(src, srcPort, dst, dstPort, protocol);
  }
  if (typeof dst === "number") throw new TypeError("Cannot make a flow key from an IPv6 and an IPv4 address");
  return flowKeyV6(src, srcPort, dst, dstPort, protocol);
}

/** The IPv6 flow key read straight from address bytes at offsets (e.g. inside a packet), without subarrays. */
export function flowKeyV6At(
  src: Uint8Array,
  srcOffset: number,
  dst: Uint8Array,
  dstOffset: number,
  srcPort: number,
  dstPort: number,
  protocol: number,
): string {
  const s = srcOffset, d = dstOffset;
  return String.fromCharCode(
    read16(src, s),
    read16(src, s + 2),
    read16(src, s + 4),
    read16(src, s + 6),
    read16(src, s + 8),
    read16(src, s + 10),
    read16(src, s + 12),
    read16(src, s + 14),
    read16(dst, d),
    read16(dst, d + 2),
    read16(dst, d + 4),
    read16(dst, d + 6),
    read16(dst, d + 8),
    read16(dst, d + 10),
    read16(dst, d + 12),
    read16(dst, d + 14),
    srcPort,
    dstPort,
    protocol,
  );
}
