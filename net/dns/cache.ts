/**
 * A cache of whole DNS answers that respects TTLs (RFC 1035 section 3.2.1, RFC 2181 section 8) and caches negative
 * answers (RFC 2308). Pure: the time is always passed in (milliseconds, any monotonic origin).
 *
 * - A positive answer lives for the smallest TTL among its records; served later, every TTL is lowered by the
 *   seconds it spent in the cache.
 * - NXDOMAIN and NODATA are kept apart (RFC 2308 section 5): NODATA (NOERROR, no answer records) is cached for its
 *   name and type only; NXDOMAIN says the name has no records of any type, so it is cached for the name and answers
 *   every type. An NXDOMAIN that carries a CNAME chain is about the chain's target, so it is cached for its type only.
 * - A negative answer lives for min(SOA TTL, SOA MINIMUM) of the SOA in its authority section (RFC 2308 section 5);
 *   without an SOA it is not cached ("SHOULD NOT").
 * - Truncated answers, SERVFAIL and every other rcode are not cached; a TTL of 0 means "do not cache" unless
 *   `minTtl` raises it (like dnsmasq's and unbound's `cache-min-ttl`).
 */
import { Flags, type MessageInfo, Rcode, RrType, setU16, setU32, u16 } from "./message.ts";

export interface DnsCacheOptions {
  /** At most this many answers; the least recently used goes first. 0 disables the cache. Default 10,000. */
  maxEntries?: number;
  /** TTLs below this are raised to it (seconds). Default 0: an answer with TTL 0 is not cached. */
  minTtl?: number;
  /** TTLs above this are lowered to it (seconds). Default 86,400 (RFC 8767 section 4 suggests a day at most). */
  maxTtl?: number;
  /** Negative answers are kept at most this long (seconds). Default 10,800 (RFC 2308 section 5: 1-3 hours). */
  maxNegativeTtl?: number;
}

export type CacheKind = "positive" | "nodata" | "nxdomain";

interface Entry {
  bytes: Uint8Array;
  /** The scan of `bytes` (offsets stay valid: serving only patches TTLs, the id and the question's type). */
  info: MessageInfo;
  kind: CacheKind;
  storedAt: number;
  expiresAt: number;
  /** TTL field offsets in `bytes` and the (clamped) TTLs stored there. */
  ttlOffsets: number[];
  ttls: number[];
  /** Offset of the question's type field, patched when an NXDOMAIN answers another type. */
  qtypeOffset: number;
}

export interface CacheKeyParts {
  name: string;
  type: number;
  class: number;
  /** Whether the query had EDNS (an OPT record) and its DO bit: answers differ (RFC 6891 section 7, RFC 3225). */
  edns: boolean;
  dnssecOk: boolean;
  checkingDisabled: boolean;
}

function key(p: CacheKeyParts, type: number | "*"): string {
  return `${p.name}|${type}|${p.class}|${p.edns ? 1 : 0}${p.dnssecOk ? 1 : 0}${p.checkingDisabled ? 1 : 0}`;
}

/** The cache key parts of a scanned query; null when it has no question. */
export function cacheKeyParts(info: MessageInfo): CacheKeyParts | null {
  const q = info.question;
  if (!q) return null;
  return {
    name: q.name,
    type: q.type,
    class: q.class,
    edns: info.opt !== null,
    dnssecOk: info.opt?.dnssecOk ?? false,
    checkingDisabled: (info.flags & Flags.CD) !== 0,
  };
}

/** What the cache would do with an answer: its kind and lifetime in seconds, or null for "do not cache". */
export function cachePolicy(
  answer: Uint8Array,
  info: MessageInfo,
  options: DnsCacheOptions = {},
): { kind: CacheKind; ttl: number; typeOnly: boolean } | null {
  if ((info.flags & Flags.TC) !== 0 || !info.question) return null;
  const minTtl = options.minTtl ?? 0;
  const clamp = (t: number, max: number) => Math.min(Math.max(t, minTtl), max);
  const answers = info.records.filter((r) => r.section === "answer");
  if (info.rcode === Rcode.NOERROR && answers.length > 0) {
    const ttl = clamp(Math.min(...info.records.map((r) => ttlValue(r.ttl))), options.maxTtl ?? 86_400);
    return ttl > 0 ? { kind: "positive", ttl, typeOnly: true } : null;
  }
  if (info.rcode !== Rcode.NOERROR && info.rcode !== Rcode.NXDOMAIN) return null;
  const soa = info.records.find((r) => r.section === "authority" && r.type === RrType.SOA);
  if (!soa) return null;
  // SOA RDATA ends with five 32-bit fields; MINIMUM is the last (RFC 1035 section 3.3.13).
  if (soa.end - soa.rdataOffset < 22) return null;
  const minimum = ((answer[soa.end - 4]! << 24) >>> 0) + (answer[soa.end - 3]! << 16) + (answer[soa.end - 2]! << 8) +
    answer[soa.end - 1]!;
  const negative = Math.min(ttlValue(soa.ttl), ttlValue(minimum));
  const ttl = clamp(negative, options.maxNegativeTtl ?? 10_800);
  if (ttl <= 0) return null;
  if (info.rcode === Rcode.NXDOMAIN) return { kind: "nxdomain", ttl, typeOnly: answers.length > 0 };
  return { kind: "nodata", ttl, typeOnly: true };
}

/** RFC 2181 section 8: a TTL with the top bit set is treated as zero. */
function ttlValue(t: number): number {
  return t >= 0x80000000 ? 0 : t;
}

export class DnsCache {
  readonly options: Required<DnsCacheOptions>;
  #entries = new Map<string, Entry>();

  constructor(options: DnsCacheOptions = {}) {
    this.options = {
      maxEntries: options.maxEntries ?? 10_000,
      minTtl: options.minTtl ?? 0,
      maxTtl: options.maxTtl ?? 86_400,
      maxNegativeTtl: options.maxNegativeTtl ?? 10_800,
    };
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * Stores an answer (the bytes as they will be served, scanned as `info`) for the query `parts`. Returns what it
   * did: the kind stored, or null when the answer is not cacheable.
   */
  put(parts: CacheKeyParts, answer: Uint8Array, info: MessageInfo, now: number): CacheKind | null {
    if (this.options.maxEntries <= 0) return null;
    const policy = cachePolicy(answer, info, this.options);
    if (!policy || !info.question) return null;
    const bytes = answer.slice();
    const max = policy.kind === "positive" ? this.options.maxTtl : this.options.maxNegativeTtl;
    // A negative answer's SOA TTL is the negative lifetime (RFC 2308 section 3), never more.
    const cap = policy.kind === "positive" ? max : policy.ttl;
    const ttls = info.records.map((r) => Math.min(Math.max(ttlValue(r.ttl), this.options.minTtl), cap));
    info.records.forEach((r, i) => setU32(bytes, r.ttlOffset, ttls[i]!));
    const entry: Entry = {
      bytes,
      info,
      kind: policy.kind,
      storedAt: now,
      expiresAt: now + policy.ttl * 1000,
      ttlOffsets: info.records.map((r) => r.ttlOffset),
      ttls,
      qtypeOffset: info.question.end - 4,
    };
    const k = key(parts, policy.kind === "nxdomain" && !policy.typeOnly ? "*" : parts.type);
    this.#entries.delete(k);
    this.#entries.set(k, entry);
    while (this.#entries.size > this.options.maxEntries) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    return policy.kind;
  }

  /**
   * A cached answer for the query, with TTLs lowered by the whole seconds spent in the cache, or null. The id and
   * the question's letter case are the caller's to set.
   */
  get(parts: CacheKeyParts, now: number): { answer: Uint8Array; info: MessageInfo; kind: CacheKind } | null {
    for (const k of [key(parts, parts.type), key(parts, "*")]) {
      const e = this.#entries.get(k);
      if (!e) continue;
      if (now >= e.expiresAt || now < e.storedAt) {
        this.#entries.delete(k);
        continue;
      }
      this.#entries.delete(k); // refresh its place in the LRU order
      this.#entries.set(k, e);
      const elapsed = Math.floor((now - e.storedAt) / 1000);
      const out = e.bytes.slice();
      e.ttlOffsets.forEach((o, i) => setU32(out, o, Math.max(0, e.ttls[i]! - elapsed)));
      if (u16(out, e.qtypeOffset) !== parts.type) setU16(out, e.qtypeOffset, parts.type);
      return { answer: out, info: e.info, kind: e.kind };
    }
    return null;
  }

  clear(): void {
    this.#entries.clear();
  }
}
