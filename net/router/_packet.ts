/**
 * The router's view of a packet: one parse per inbound packet into a reused `Parsed`, and builders that write
 * whole outbound IP packets into a caller's buffer. Codecs come from `net/wire`.
 */
import { TcpFlags, type TcpRepr } from "../wire/tcp_repr.ts";

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

export type DropReason =
  | "truncated"
  | "badVersion"
  | "badHeaderLength"
  | "badLength"
  | "badChecksum"
  | "fragment"
  | "badTcpHeader"
  | "badUdpHeader"
  | "extensionHeaders"
  | "multicastOrBroadcast";

/** A parsed inbound packet; the router reuses one object, so nothing here outlives the packet. */
export interface Parsed {
  family: 4 | 6;
  protocol: number;
  /** Views into the packet. */
  src: Uint8Array;
  dst: Uint8Array;
  srcPort: number;
  dstPort: number;
  /** The 5-tuple as a map key. */
  key: string;
  /** Valid when `protocol` is TCP; its payload is a view into the packet. */
  tcp: TcpRepr;
  /** Valid when `protocol` is UDP: a view into the packet. */
  udpPayload: Uint8Array;
}

const EMPTY = new Uint8Array(0);

export function newParsed(): Parsed {
  return {
    family: 4,
    protocol: 0,
    src: EMPTY,
    dst: EMPTY,
    srcPort: 0,
    dstPort: 0,
    key: "",
    tcp: { srcPort: 0, dstPort: 0, seq: 0, ack: 0, flags: 0, window: 0, urgent: 0, payload: EMPTY },
    udpPayload: EMPTY,
  };
}

/** Formats 4 or 16 address bytes (dotted IPv4, RFC 5952 IPv6). */
export function addressText(a: Uint8Array): string {
  if (a.length === 4) return `${a[0]}.${a[1]}.${a[2]}.${a[3]}`;
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((a[i]! << 8) | a[i + 1]!);
  // RFC 5952 section 4.2: the longest run (at least 2) of zero words becomes "::", the first such run on a tie.
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (best < 0) return hex(words);
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

function keyOf(p: Parsed): string {
  const s = p.src, d = p.dst;
  if (p.family === 4) {
    return `${p.protocol}|${s[0]}.${s[1]}.${s[2]}.${s[3]}|${p.srcPort}|${d[0]}.${d[1]}.${d[2]}.${d[3]}|${p.dstPort}`;
  }
  return `${p.protocol}|${addressText(s)}|${p.srcPort}|${addressText(d)}|${p.dstPort}`;
}

// ---- checksums (RFC 1071) ----

/** Adds 16-bit big-endian words of `b[from..to)` to `sum` (not folded). */
function sumWords(b: Uint8Array, from: number, to: number, sum: number): number {
  let i = from;
  for (; i + 1 < to; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (i < to) sum += b[i]! << 8;
  return sum;
}

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

function pseudoSum(family: 4 | 6, src: Uint8Array, dst: Uint8Array, proto: number, len: number): number {
  let s = sumWords(src, 0, src.length, 0);
  s = sumWords(dst, 0, dst.length, s);
  return s + proto + (family === 4 ? len : (len >>> 16) + (len & 0xffff));
}

// ---- inbound ----

/** Parses an inbound IP packet into `p`; returns null, or why the packet is dropped. */
export function parseInbound(b: Uint8Array, p: Parsed): DropReason | null {
  if (b.length < 1) return "truncated";
  const version = b[0]! >> 4;
  let l4: number;
  let end: number;
  if (version === 4) {
    if (b.length < 20) return "truncated";
    const ihl = (b[0]! & 0x0f) * 4;
    if (ihl < 20 || ihl > b.length) return "badHeaderLength";
    const total = (b[2]! << 8) | b[3]!;
    if (total < ihl || total > b.length) return "badLength";
    // More-fragments flag or a fragment offset: tp does not reassemble (RFC 791 section 3.2); the kernel sends
    // whole packets to a TUN whose MTU it knows.
    if ((b[6]! & 0x20) !== 0 || (((b[6]! & 0x1f) << 8) | b[7]!) !== 0) return "fragment";
    if (fold(sumWords(b, 0, ihl, 0)) !== 0xffff) return "badChecksum";
    p.family = 4;
    p.protocol = b[9]!;
    p.src = b.subarray(12, 16);
    p.dst = b.subarray(16, 20);
    if (p.dst[0]! >= 224) return "multicastOrBroadcast";
    l4 = ihl;
    end = total;
  } else if (version === 6) {
    if (b.length < 40) return "truncated";
    const payloadLen = (b[4]! << 8) | b[5]!;
    end = 40 + payloadLen;
    if (end > b.length) return "badLength";
    p.family = 6;
    p.protocol = b[6]!;
    p.src = b.subarray(8, 24);
    p.dst = b.subarray(24, 40);
    if (p.dst[0] === 0xff) return "multicastOrBroadcast";
    l4 = 40;
    // Walk extension headers (RFC 8200 section 4): hop-by-hop, routing, destination options; a fragment header
    // means a fragment.
    for (let hops = 0; hops < 8; hops++) {
      const nh = p.protocol;
      if (nh === 44) return "fragment";
      if (nh !== 0 && nh !== 43 && nh !== 60) break;
      if (l4 + 8 > end) return "truncated";
      p.protocol = b[l4]!;
      l4 += (b[l4 + 1]! + 1) * 8;
      if (l4 > end) return "truncated";
    }
  } else {
    return "badVersion";
  }
  const ipLen = end - l4;
  if (p.protocol === IPPROTO_TCP) {
    if (ipLen < 20) return "badTcpHeader";
    const off = (b[l4 + 12]! >> 4) * 4;
    if (off < 20 || off > ipLen) return "badTcpHeader";
    if (fold(sumWords(b, l4, end, pseudoSum(p.family, p.src, p.dst, IPPROTO_TCP, ipLen))) !== 0xffff) {
      return "badChecksum";
    }
    const t = p.tcp;
    t.srcPort = p.srcPort = (b[l4]! << 8) | b[l4 + 1]!;
    t.dstPort = p.dstPort = (b[l4 + 2]! << 8) | b[l4 + 3]!;
    t.seq = ((b[l4 + 4]! << 24) | (b[l4 + 5]! << 16) | (b[l4 + 6]! << 8) | b[l4 + 7]!) >>> 0;
    t.ack = ((b[l4 + 8]! << 24) | (b[l4 + 9]! << 16) | (b[l4 + 10]! << 8) | b[l4 + 11]!) >>> 0;
    t.flags = b[l4 + 13]!;
    t.window = (b[l4 + 14]! << 8) | b[l4 + 15]!;
    t.urgent = (b[l4 + 18]! << 8) | b[l4 + 19]!;
    t.payload = b.subarray(l4 + off, end);
    delete t.mss;
    delete t.windowScale;
    delete t.sackPermitted;
    delete t.sackBlocks;
    delete t.timestamps;
    if (off > 20 && !parseTcpOptions(b, l4 + 20, l4 + off, t)) return "badTcpHeader";
  } else if (p.protocol === IPPROTO_UDP) {
    if (ipLen < 8) return "badUdpHeader";
    const len = (b[l4 + 4]! << 8) | b[l4 + 5]!;
    if (len < 8 || len > ipLen) return "badUdpHeader";
    const ck = (b[l4 + 6]! << 8) | b[l4 + 7]!;
    if (ck !== 0 || p.family === 6) {
      if (fold(sumWords(b, l4, l4 + len, pseudoSum(p.family, p.src, p.dst, IPPROTO_UDP, len))) !== 0xffff) {
        return "badChecksum";
      }
    }
    p.srcPort = (b[l4]! << 8) | b[l4 + 1]!;
    p.dstPort = (b[l4 + 2]! << 8) | b[l4 + 3]!;
    p.udpPayload = b.subarray(l4 + 8, l4 + len);
  } else {
    p.srcPort = 0;
    p.dstPort = 0;
  }
  p.key = keyOf(p);
  return null;
}

/** TCP options (RFC 9293 section 3.1, RFC 7323, RFC 2018); false when an option overruns the header. */
function parseTcpOptions(b: Uint8Array, i: number, end: number, t: TcpRepr): boolean {
  while (i < end) {
    const kind = b[i]!;
    if (kind === 0) return true; // end of option list
    if (kind === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) return false;
    const len = b[i + 1]!;
    if (len < 2 || i + len > end) return false;
    switch (kind) {
      case 2:
        if (len === 4) t.mss = (b[i + 2]! << 8) | b[i + 3]!;
        break;
      case 3:
        if (len === 3) t.windowScale = b[i + 2]!;
        break;
      case 4:
        if (len === 2) t.sackPermitted = true;
        break;
      case 5: {
        const blocks: [number, number][] = [];
        for (let j = i + 2; j + 8 <= i + len && blocks.length < 4; j += 8) {
          blocks.push([readU32(b, j), readU32(b, j + 4)]);
        }
        t.sackBlocks = blocks;
        break;
      }
      case 8:
        if (len === 10) t.timestamps = [readU32(b, i + 2), readU32(b, i + 6)];
        break;
    }
    i += len;
  }
  return true;
}

function readU32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

function writeU32(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 24;
  b[i + 1] = (v >>> 16) & 0xff;
  b[i + 2] = (v >>> 8) & 0xff;
  b[i + 3] = v & 0xff;
}

// ---- outbound ----

let ipId = 1;

/** Writes an IP header (no options) for `l4Len` bytes of `proto`; returns the header length. */
function writeIpHeader(
  b: Uint8Array,
  family: 4 | 6,
  src: Uint8Array,
  dst: Uint8Array,
  proto: number,
  l4Len: number,
): number {
  if (family === 4) {
    const total = 20 + l4Len;
    b[0] = 0x45;
    b[1] = 0;
    b[2] = total >> 8;
    b[3] = total & 0xff;
    ipId = (ipId + 1) & 0xffff;
    b[4] = ipId >> 8;
    b[5] = ipId & 0xff;
    b[6] = 0x40; // don't fragment
    b[7] = 0;
    b[8] = 64;
    b[9] = proto;
    b[10] = 0;
    b[11] = 0;
    b.set(src, 12);
    b.set(dst, 16);
    const ck = ~fold(sumWords(b, 0, 20, 0)) & 0xffff;
    b[10] = ck >> 8;
    b[11] = ck & 0xff;
    return 20;
  }
  b[0] = 0x60;
  b[1] = 0;
  b[2] = 0;
  b[3] = 0;
  b[4] = l4Len >> 8;
  b[5] = l4Len & 0xff;
  b[6] = proto;
  b[7] = 64;
  b.set(src, 8);
  b.set(dst, 24);
  return 40;
}

function tcpOptionsLen(t: TcpRepr): number {
  let n = 0;
  if (t.mss !== undefined) n += 4;
  if (t.windowScale !== undefined) n += 4; // NOP + 3
  if (t.sackPermitted) n += 4; // NOP NOP + 2 (or merged with timestamps)
  if (t.timestamps) n += 12; // NOP NOP + 10
  if (t.sackBlocks?.length) n += 4 + 8 * t.sackBlocks.length; // NOP NOP + 2 + 8n
  return n;
}

/** Writes a whole IP + TCP packet into `b`; returns its length, or 0 when it does not fit. */
export function writeTcpPacket(b: Uint8Array, family: 4 | 6, src: Uint8Array, dst: Uint8Array, t: TcpRepr): number {
  const optLen = tcpOptionsLen(t);
  const hdrLen = 20 + optLen;
  const l4Len = hdrLen + t.payload.length;
  const ipLen = family === 4 ? 20 : 40;
  if (ipLen + l4Len > b.length || l4Len > 0xffff) return 0;
  writeIpHeader(b, family, src, dst, IPPROTO_TCP, l4Len);
  const o = ipLen;
  b[o] = t.srcPort >> 8;
  b[o + 1] = t.srcPort & 0xff;
  b[o + 2] = t.dstPort >> 8;
  b[o + 3] = t.dstPort & 0xff;
  writeU32(b, o + 4, t.seq);
  writeU32(b, o + 8, t.ack);
  b[o + 12] = (hdrLen / 4) << 4;
  b[o + 13] = t.flags;
  b[o + 14] = t.window >> 8;
  b[o + 15] = t.window & 0xff;
  b[o + 16] = 0;
  b[o + 17] = 0;
  b[o + 18] = t.urgent >> 8;
  b[o + 19] = t.urgent & 0xff;
  let i = o + 20;
  if (t.mss !== undefined) {
    b[i] = 2, b[i + 1] = 4, b[i + 2] = t.mss >> 8, b[i + 3] = t.mss & 0xff;
    i += 4;
  }
  if (t.windowScale !== undefined) {
    b[i] = 1, b[i + 1] = 3, b[i + 2] = 3, b[i + 3] = t.windowScale;
    i += 4;
  }
  if (t.sackPermitted) {
    b[i] = 1, b[i + 1] = 1, b[i + 2] = 4, b[i + 3] = 2;
    i += 4;
  }
  if (t.timestamps) {
    b[i] = 1, b[i + 1] = 1, b[i + 2] = 8, b[i + 3] = 10;
    writeU32(b, i + 4, t.timestamps[0]);
    writeU32(b, i + 8, t.timestamps[1]);
    i += 12;
  }
  if (t.sackBlocks?.length) {
    b[i] = 1, b[i + 1] = 1, b[i + 2] = 5, b[i + 3] = 2 + 8 * t.sackBlocks.length;
    i += 4;
    for (const [l, r] of t.sackBlocks) {
      writeU32(b, i, l);
      writeU32(b, i + 4, r);
      i += 8;
    }
  }
  b.set(t.payload, i);
  const ck = ~fold(sumWords(b, o, o + l4Len, pseudoSum(family, src, dst, IPPROTO_TCP, l4Len))) & 0xffff;
  b[o + 16] = ck >> 8;
  b[o + 17] = ck & 0xff;
  return ipLen + l4Len;
}

/** Writes a whole IP + UDP packet into `b`; returns its length, or 0 when it does not fit. */
export function writeUdpPacket(
  b: Uint8Array,
  family: 4 | 6,
  src: Uint8Array,
  srcPort: number,
  dst: Uint8Array,
  dstPort: number,
  payload: Uint8Array,
): number {
  const l4Len = 8 + payload.length;
  const ipLen = family === 4 ? 20 : 40;
  if (ipLen + l4Len > b.length || l4Len > 0xffff) return 0;
  writeIpHeader(b, family, src, dst, IPPROTO_UDP, l4Len);
  const o = ipLen;
  b[o] = srcPort >> 8;
  b[o + 1] = srcPort & 0xff;
  b[o + 2] = dstPort >> 8;
  b[o + 3] = dstPort & 0xff;
  b[o + 4] = l4Len >> 8;
  b[o + 5] = l4Len & 0xff;
  b[o + 6] = 0;
  b[o + 7] = 0;
  b.set(payload, o + 8);
  let ck = ~fold(sumWords(b, o, o + l4Len, pseudoSum(family, src, dst, IPPROTO_UDP, l4Len))) & 0xffff;
  if (ck === 0) ck = 0xffff; // RFC 768: a computed zero is sent as all ones
  b[o + 6] = ck >> 8;
  b[o + 7] = ck & 0xff;
  return ipLen + l4Len;
}

/**
 * Writes an ICMP destination unreachable answering `quote` (the offending packet, or its first bytes), from the
 * address it was sent to. Codes: RFC 792 (port 3, host 1, administratively prohibited 13) and RFC 4443 section
 * 3.1 (port 4, address 3, administratively prohibited 1). Returns the length, or 0 when `quote` is unusable.
 */
export function writeIcmpUnreachable(b: Uint8Array, quote: Uint8Array, reason: string): number {
  const family = quote[0]! >> 4;
  if (family === 4) {
    if (quote.length < 20) return 0;
    const code = reason === "refused" ? 3 : reason === "denied" ? 13 : 1;
    // RFC 1812 section 4.3.2.3: quote as much as fits in 576 bytes.
    const q = quote.subarray(0, Math.min(quote.length, 576 - 28, b.length - 28));
    const l4Len = 8 + q.length;
    writeIpHeader(b, 4, quote.subarray(16, 20), quote.subarray(12, 16), IPPROTO_ICMP, l4Len);
    b[20] = 3;
    b[21] = code;
    b[22] = 0, b[23] = 0, b[24] = 0, b[25] = 0, b[26] = 0, b[27] = 0;
    b.set(q, 28);
    const ck = ~fold(sumWords(b, 20, 20 + l4Len, 0)) & 0xffff;
    b[22] = ck >> 8;
    b[23] = ck & 0xff;
    return 20 + l4Len;
  }
  if (family === 6) {
    if (quote.length < 40) return 0;
    const code = reason === "refused" ? 4 : reason === "denied" ? 1 : 3;
    // RFC 4443 section 2.4 (c): as much as fits in the minimum IPv6 MTU (1280).
    const q = quote.subarray(0, Math.min(quote.length, 1280 - 48, b.length - 48));
    const l4Len = 8 + q.length;
    const src = quote.subarray(24, 40), dst = quote.subarray(8, 24);
    writeIpHeader(b, 6, src, dst, IPPROTO_ICMPV6, l4Len);
    b[40] = 1;
    b[41] = code;
    b[42] = 0, b[43] = 0, b[44] = 0, b[45] = 0, b[46] = 0, b[47] = 0;
    b.set(q, 48);
    const ck = ~fold(sumWords(b, 40, 40 + l4Len, pseudoSum(6, src, dst, IPPROTO_ICMPV6, l4Len))) & 0xffff;
    b[42] = ck >> 8;
    b[43] = ck & 0xff;
    return 40 + l4Len;
  }
  return 0;
}

export { TcpFlags };
