/**
 * CIDR and address parsing for netlink requests: text in, bytes out, with errors that quote the input.
 * (`net/cidr.ts` does CIDR arithmetic for the router; `ffi/` is the lower layer and cannot import it.)
 */
import ipaddr from "ipaddr.js";

/** A parsed prefix: the address as written (host bits kept) and its length. */
export interface Prefix {
  family: 4 | 6;
  /** 4 or 16 bytes, network order. */
  address: Uint8Array;
  prefixLength: number;
}

const USAGE = "expected an address and a prefix length, like 198.18.0.0/15 or 2001:db8::/32";

/** Parses "a.b.c.d/n", "x::/n", or a bare address (a host prefix, /32 or /128). */
export function parseCidr(text: string): Prefix {
  const slash = text.indexOf("/");
  const addrText = slash < 0 ? text : text.slice(0, slash);
  let family: 4 | 6;
  let address: Uint8Array;
  try {
    ({ family, address } = parseAddress(addrText));
  } catch {
    throw new SyntaxError(`Cannot parse CIDR "${text}": ${USAGE}`);
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

/** Parses a dotted-quad IPv4 or an IPv6 address (no zone, no shortened IPv4 forms like "10.1"). */
export function parseAddress(text: string): { family: 4 | 6; address: Uint8Array } {
  if (!text.includes(":")) {
    if (!ipaddr.IPv4.isValidFourPartDecimal(text)) throw new SyntaxError(`Cannot parse IP address "${text}"`);
    return { family: 4, address: Uint8Array.from(ipaddr.IPv4.parse(text).toByteArray()) };
  }
  if (text.includes("%") || !ipaddr.IPv6.isValid(text)) throw new SyntaxError(`Cannot parse IP address "${text}"`);
  return { family: 6, address: Uint8Array.from(ipaddr.IPv6.parse(text).toByteArray()) };
}

/** Formats 4 or 16 address bytes the way iproute2 does ("198.18.0.1", "2001:db8::1"). */
export function formatAddress(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join(".");
  if (bytes.length === 16) return ipaddr.fromByteArray(Array.from(bytes)).toString();
  throw new RangeError(`An IP address has 4 or 16 bytes, not ${bytes.length}`);
}

/** "198.18.0.0/15"; a host prefix keeps its length ("198.18.0.1/32"). */
export function formatPrefix(prefix: Prefix): string {
  return `${formatAddress(prefix.address)}/${prefix.prefixLength}`;
}

/** The prefix with host bits cleared. */
export function networkOf(prefix: Prefix): Prefix {
  const address = prefix.address.slice();
  for (let bit = prefix.prefixLength; bit < address.length * 8; bit++) {
    address[bit >> 3]! &= ~(0x80 >> (bit & 7));
  }
  return { family: prefix.family, address, prefixLength: prefix.prefixLength };
}

/** Parses a route destination or rule selector: a CIDR whose host bits are zero (the kernel rejects others). */
export function parseNetwork(text: string): Prefix {
  const prefix = parseCidr(text);
  const network = networkOf(prefix);
  if (!network.address.every((b, i) => b === prefix.address[i])) {
    throw new SyntaxError(`CIDR "${text}" has host bits set: did you mean "${formatPrefix(network)}"?`);
  }
  return prefix;
}
