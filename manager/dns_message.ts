/**
 * The few things the manager reads in a DNS message (RFC 1035 section 4.1) it forwards: where the question section
 * ends, whether an answer's question is the query's, and the TTLs, which it caps. A view over the bytes, checked as
 * it walks: a message that runs past its end is malformed (null), never read out of bounds.
 */

/** A DNS header is 12 bytes (RFC 1035 section 4.1.1). */
export const DNS_HEADER_LEN = 12;
/** The OPT pseudo-record (RFC 6891 section 6.1.2): its TTL field holds flags, not a time. */
const TYPE_OPT = 41;

const u16 = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;

/** The offset after the name at `o` (labels, ending with the root or a compression pointer); null past the end. */
function skipName(b: Uint8Array, o: number): number | null {
  for (let labels = 0; labels < 128; labels++) {
    if (o >= b.length) return null;
    const len = b[o]!;
    if ((len & 0xc0) === 0xc0) return o + 2 <= b.length ? o + 2 : null; // a pointer ends the name
    if ((len & 0xc0) !== 0) return null; // the 0x40 and 0x80 label types are not in use (RFC 6891 section 5)
    if (len === 0) return o + 1;
    o += 1 + len;
  }
  return null;
}

/** The offset where the question section ends; null when the message is malformed. */
export function questionEnd(b: Uint8Array): number | null {
  if (b.length < DNS_HEADER_LEN) return null;
  let o = DNS_HEADER_LEN;
  for (let q = u16(b, 4); q > 0; q--) {
    const n = skipName(b, o);
    if (n === null || n + 4 > b.length) return null;
    o = n + 4; // QTYPE, QCLASS
  }
  return o;
}

/**
 * Whether `answer` asks exactly `query`'s questions: the same count, the same names (ASCII letters compared without
 * regard to case, RFC 4343, since some servers keep 0x20 randomisation and some undo it), and the same type and
 * class bytes exactly. A question with a compression pointer never matches (a query we forward has none).
 */
export function sameQuestion(query: Uint8Array, answer: Uint8Array): boolean {
  if (query.length < DNS_HEADER_LEN || answer.length < DNS_HEADER_LEN) return false;
  if (u16(query, 4) !== u16(answer, 4)) return false;
  let o = DNS_HEADER_LEN;
  for (let q = u16(query, 4); q > 0; q--) {
    for (;;) {
      if (o >= query.length || o >= answer.length) return false;
      const len = query[o]!;
      if (answer[o] !== len || (len & 0xc0) !== 0) return false;
      if (len === 0) break;
      if (o + 1 + len > query.length || o + 1 + len > answer.length) return false;
      for (let i = o + 1; i <= o + len; i++) if (foldCase(query[i]!) !== foldCase(answer[i]!)) return false;
      o += 1 + len;
    }
    o += 1;
    if (o + 4 > query.length || o + 4 > answer.length) return false;
    for (let i = o; i < o + 4; i++) if (query[i] !== answer[i]) return false; // type and class: exact
    o += 4;
  }
  return true;
}

function foldCase(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
}

/**
 * Lowers every record's TTL above `maxTtl` to it, in place (answer, authority and additional sections; not OPT's).
 * Returns how many it lowered, or null when the message is malformed (its records run past its end).
 */
export function capTtls(b: Uint8Array, maxTtl: number): number | null {
  let o = questionEnd(b);
  if (o === null) return null;
  const records = u16(b, 6) + u16(b, 8) + u16(b, 10);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let lowered = 0;
  for (let r = 0; r < records; r++) {
    const n = skipName(b, o);
    if (n === null || n + 10 > b.length) return null;
    const type = u16(b, n);
    const rdlength = u16(b, n + 8);
    if (n + 10 + rdlength > b.length) return null;
    if (type !== TYPE_OPT && v.getUint32(n + 4) > maxTtl) {
      v.setUint32(n + 4, maxTtl);
      lowered++;
    }
    o = n + 10 + rdlength;
  }
  return lowered;
}
