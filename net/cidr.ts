/**
 * CIDR arithmetic for routing decisions: parse, contain, overlap, and subtract (for `--never-proxy`, which carves
 * holes in the routed subnets by routing only what is left). Off the packet path; addresses are bigints here.
 */
import { ipToString, parsePrefix, type Prefix } from "./wire/address.ts";

export interface Cidr {
  family: 4 | 6;
  /** The network address, host bits zero. */
  base: bigint;
  prefix: number;
}

const BITS = { 4: 32, 6: 128 } as const;

function bitsOf(family: 4 | 6): number {
  return BITS[family];
}

/**
 * Parses "a.b.c.d/n" or "x::/n" (a bare address is a host route); host bits must be zero unless `loose`. The text is
 * read by `net/wire/address.ts`, the one parser tp has, which rejects shorthand forms like "10.0.0/8".
 */
export function parseCidr(text: string, opts: { loose?: boolean } = {}): Cidr {
  let p: Prefix;
  try {
    p = parsePrefix(text.trim());
  } catch {
    throw new SyntaxError(`Cannot parse CIDR "${text}": expected an address and a prefix length, like 10.96.0.0/12`);
  }
  const family = p.family;
  let value = 0n;
  for (const b of p.address) value = (value << 8n) | BigInt(b);
  const hostMask = (1n << BigInt(bitsOf(family) - p.prefixLength)) - 1n;
  const c: Cidr = { family, base: value & ~hostMask, prefix: p.prefixLength };
  if ((value & hostMask) !== 0n && !opts.loose) {
    throw new SyntaxError(`Cannot use CIDR "${text}": it has host bits set; did you mean ${formatCidr(c)}?`);
  }
  return c;
}

/** An address (text) as its family and value; null when it is not one. */
export function parseAddressValue(text: string): { family: 4 | 6; value: bigint } | null {
  try {
    const c = parseCidr(text);
    return c.prefix === bitsOf(c.family) ? { family: c.family, value: c.base } : null;
  } catch {
    return null;
  }
}

/** The address as text ("198.19.0.0", "2001:db8::"). */
export function formatAddress(family: 4 | 6, value: bigint): string {
  const bytes = new Uint8Array(family === 4 ? 4 : 16);
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return ipToString(bytes);
}

export function formatCidr(c: Cidr): string {
  return `${formatAddress(c.family, c.base)}/${c.prefix}`;
}

/** The last address of the block. */
export function lastAddress(c: Cidr): bigint {
  return c.base | ((1n << BigInt(bitsOf(c.family) - c.prefix)) - 1n);
}

/** Whether `outer` contains all of `inner`. */
export function containsCidr(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && outer.prefix <= inner.prefix &&
    (inner.base >> BigInt(bitsOf(outer.family) - outer.prefix)) ===
      (outer.base >> BigInt(bitsOf(outer.family) - outer.prefix));
}

/** Whether the two blocks share any address (for CIDRs: one contains the other). */
export function overlaps(a: Cidr, b: Cidr): boolean {
  return containsCidr(a, b) || containsCidr(b, a);
}

/** Whether the address (text) is inside the block. */
export function cidrHas(c: Cidr, address: string): boolean {
  return containsCidr(c, parseCidr(address));
}

/**
 * `from` minus every block of `holes`, as the fewest CIDRs that cover exactly what is left, sorted by address.
 * Splitting halves the block around each hole, so a hole of prefix p in a block of prefix q leaves p - q blocks.
 */
export function subtractCidrs(from: Cidr, holes: readonly Cidr[]): Cidr[] {
  const relevant = holes.filter((h) => h.family === from.family && overlaps(from, h));
  if (relevant.some((h) => containsCidr(h, from))) return [];
  if (relevant.length === 0) return [from];
  const bits = bitsOf(from.family);
  const half = BigInt(bits - from.prefix - 1);
  const lo: Cidr = { family: from.family, base: from.base, prefix: from.prefix + 1 };
  const hi: Cidr = { family: from.family, base: from.base | (1n << half), prefix: from.prefix + 1 };
  return [...subtractCidrs(lo, relevant), ...subtractCidrs(hi, relevant)];
}

/** Removes blocks contained in others and sorts; the result routes exactly the union of the input. */
export function normalizeCidrs(cidrs: readonly Cidr[]): Cidr[] {
  const sorted = [...cidrs].sort((a, b) =>
    a.family - b.family || (a.base < b.base ? -1 : a.base > b.base ? 1 : a.prefix - b.prefix)
  );
  const out: Cidr[] = [];
  for (const c of sorted) {
    if (!out.some((o) => containsCidr(o, c))) out.push(c);
  }
  return out;
}
