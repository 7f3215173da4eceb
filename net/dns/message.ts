/**
 * DNS messages on the wire (RFC 1035 section 4.1), read without copying and built by hand: the resolver's hot path
 * (cache hits, pass-through answers) only ever patches bytes at offsets this scanner found.
 *
 * `scanMessage()` is the checked entry point: it walks the whole message once, bounds every name and pointer, and
 * returns `null` for anything malformed (the caller counts the drop). After it, every offset in the result is inside
 * the buffer.
 */

/** RFC 1035 section 4.1.1: the header is 12 bytes. */
export const HEADER_LEN = 12;
/** RFC 1035 section 4.2.1: a UDP message without EDNS is at most 512 bytes. */
export const UDP_CLASSIC_LIMIT = 512;
/** RFC 1035 section 4.2.2 / RFC 7766: a TCP message is prefixed by a 16-bit length. */
export const TCP_LIMIT = 65535;
/** RFC 1035 section 2.3.4: a name is at most 255 bytes on the wire. */
const MAX_NAME_WIRE = 255;
/** A name with more pointers than this is a loop (there are at most 127 labels in 255 bytes). */
const MAX_POINTERS = 127;

export const Rcode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export const Opcode = { QUERY: 0 } as const;
export const RrType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  OPT: 41,
} as const;
export const CLASS_IN = 1;

/** Header flag bits (RFC 1035 section 4.1.1, RFC 4035 section 3.2 for AD and CD). */
export const Flags = {
  QR: 0x8000,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
  AD: 0x0020,
  CD: 0x0010,
} as const;

export interface Question {
  /** Lower-case, dotted, no trailing dot; the root is "". Bytes outside [!-~] and "." "\\" are escaped as \DDD. */
  name: string;
  type: number;
  class: number;
  /** Offset of the name's first byte (always 12) and of the byte after the question's class. */
  start: number;
  end: number;
}

export type Section = "answer" | "authority" | "additional";

export interface RecordInfo {
  section: Section;
  /** Owner name, normalised like `Question.name`. */
  name: string;
  type: number;
  class: number;
  ttl: number;
  /** Offsets: start of the owner name, the TTL field, RDATA, and the byte after RDATA. */
  start: number;
  ttlOffset: number;
  rdataOffset: number;
  end: number;
}

export interface MessageInfo {
  id: number;
  flags: number;
  /** The 4-bit header rcode (extended rcode bits from OPT are not merged). */
  rcode: number;
  opcode: number;
  qdcount: number;
  /** The first question, or null when qdcount is 0. */
  question: Question | null;
  records: RecordInfo[];
  /** The OPT pseudo-record (RFC 6891 section 6.1.2), if present. */
  opt: { udpSize: number; dnssecOk: boolean; start: number; end: number } | null;
  length: number;
}

/** Reads a big-endian 16-bit value; the caller has checked bounds. */
export function u16(buf: Uint8Array, o: number): number {
  return (buf[o]! << 8) | buf[o + 1]!;
}

function u32(buf: Uint8Array, o: number): number {
  return ((buf[o]! << 24) >>> 0) + (buf[o + 1]! << 16) + (buf[o + 2]! << 8) + buf[o + 3]!;
}

export function setU16(buf: Uint8Array, o: number, v: number): void {
  buf[o] = (v >>> 8) & 0xff;
  buf[o + 1] = v & 0xff;
}

export function setU32(buf: Uint8Array, o: number, v: number): void {
  buf[o] = (v >>> 24) & 0xff;
  buf[o + 1] = (v >>> 16) & 0xff;
  buf[o + 2] = (v >>> 8) & 0xff;
  buf[o + 3] = v & 0xff;
}

/**
 * Reads the name at `offset`, following compression pointers (RFC 1035 section 4.1.4) only backwards and a bounded
 * number of times: tp's one walker over names from the network. Returns the normalised name and the offset after
 * the name's in-place bytes, or null when the name is malformed, longer than 255 bytes, or its in-place bytes run
 * past `limit` (e.g. the end of the record holding it). With `wire`, the name's uncompressed wire bytes (letter case
 * kept) are appended to it.
 */
export function readName(
  buf: Uint8Array,
  offset: number,
  limit = buf.length,
  wire?: number[],
): { name: string; end: number } | null {
  const labels: string[] = [];
  let o = offset;
  let end = -1;
  let wireLen = 1;
  let pointers = 0;
  let lowest = offset;
  for (;;) {
    const stop = end < 0 ? limit : buf.length;
    if (o >= stop) return null;
    const len = buf[o]!;
    if (len === 0) {
      if (end < 0) end = o + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (o + 1 >= stop || ++pointers > MAX_POINTERS) return null;
      const target = ((len & 0x3f) << 8) | buf[o + 1]!;
      if (end < 0) end = o + 2;
      // Only backwards, and strictly before every place this name has been read from: no loops.
      if (target >= lowest) return null;
      lowest = target;
      o = target;
      continue;
    }
    if (kind !== 0) return null; // 0x40 and 0x80 label types are obsolete (RFC 6891 section 5)
    if (o + 1 + len > stop) return null;
    wireLen += len + 1;
    if (wireLen > MAX_NAME_WIRE) return null;
    labels.push(labelText(buf, o + 1, len));
    if (wire !== undefined) { for (let i = o; i <= o + len; i++) wire.push(buf[i]!); }
    o += 1 + len;
  }
  wire?.push(0);
  return { name: labels.join("."), end };
}

/** One label as normalised text: lower-case ASCII; control bytes, non-ASCII, dot and backslash as \\DDD. */
function labelText(buf: Uint8Array, start: number, len: number): string {
  let s = "";
  for (let i = start; i < start + len; i++) {
    let c = buf[i]!;
    if (c >= 0x41 && c <= 0x5a) c += 0x20; // ASCII case-insensitive (RFC 4343)
    if (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c) s += String.fromCharCode(c);
    else s += "\\" + String(c).padStart(3, "0");
  }
  return s;
}

/** Encodes a normalised dotted name (as `readName` returns it) to wire format, uncompressed. */
export function encodeName(name: string): Uint8Array {
  const out: number[] = [];
  if (name !== "") {
    for (const label of name.split(".")) {
      const bytes: number[] = [];
      for (let i = 0; i < label.length; i++) {
        if (label[i] === "\\" && /^\d{3}$/.test(label.slice(i + 1, i + 4))) {
          bytes.push(Number(label.slice(i + 1, i + 4)));
          i += 3;
        } else {
          const c = label.charCodeAt(i);
          if (c > 0x7f) throw new RangeError(`Cannot encode DNS name "${name}": non-ASCII character`);
          bytes.push(c);
        }
      }
      if (bytes.length === 0 || bytes.length > 63) {
        throw new RangeError(`Cannot encode DNS name "${name}": label "${label}" is empty or over 63 bytes`);
      }
      out.push(bytes.length, ...bytes);
    }
  }
  out.push(0);
  if (out.length > MAX_NAME_WIRE) throw new RangeError(`Cannot encode DNS name "${name}": over 255 bytes`);
  return Uint8Array.from(out);
}

/** Walks a whole message. Returns null if anything is out of bounds or inconsistent. */
export function scanMessage(buf: Uint8Array): MessageInfo | null {
  if (buf.length < HEADER_LEN || buf.length > TCP_LIMIT) return null;
  const flags = u16(buf, 2);
  const qdcount = u16(buf, 4);
  const counts = [u16(buf, 6), u16(buf, 8), u16(buf, 10)] as const;
  let o = HEADER_LEN;
  let question: Question | null = null;
  for (let i = 0; i < qdcount; i++) {
    const n = readName(buf, o);
    if (!n || n.end + 4 > buf.length) return null;
    if (i === 0) {
      question = { name: n.name, type: u16(buf, n.end), class: u16(buf, n.end + 2), start: o, end: n.end + 4 };
    }
    o = n.end + 4;
  }
  const records: RecordInfo[] = [];
  let opt: MessageInfo["opt"] = null;
  const sections: Section[] = ["answer", "authority", "additional"];
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s]!; i++) {
      const n = readName(buf, o);
      if (!n || n.end + 10 > buf.length) return null;
      const type = u16(buf, n.end);
      const rdlen = u16(buf, n.end + 8);
      const end = n.end + 10 + rdlen;
      if (end > buf.length) return null;
      if (type === RrType.OPT) {
        // RFC 6891 section 6.1.1: at most one OPT, in the additional section, owned by the root.
        if (s !== 2 || opt !== null || n.name !== "") return null;
        const ttl = u32(buf, n.end + 4);
        opt = { udpSize: u16(buf, n.end + 2), dnssecOk: (ttl & 0x8000) !== 0, start: o, end };
      } else {
        records.push({
          section: sections[s]!,
          name: n.name,
          type,
          class: u16(buf, n.end + 2),
          ttl: u32(buf, n.end + 4),
          start: o,
          ttlOffset: n.end + 4,
          rdataOffset: n.end + 10,
          end,
        });
      }
      o = end;
    }
  }
  // Trailing bytes after the last record: tolerated by most servers, but a sign of a broken or hostile sender.
  if (o !== buf.length) return null;
  return {
    id: u16(buf, 0),
    flags,
    rcode: flags & 0x000f,
    opcode: (flags >>> 11) & 0x0f,
    qdcount,
    question,
    records,
    opt,
    length: buf.length,
  };
}

/** The largest answer this query's sender accepts over UDP (RFC 6891 section 6.2.5: below 512 means 512). */
export function udpLimit(query: MessageInfo): number {
  return query.opt ? Math.max(UDP_CLASSIC_LIMIT, query.opt.udpSize) : UDP_CLASSIC_LIMIT;
}

/** The EDNS UDP size tp advertises in answers it builds (RFC 9715 / DNS flag day 2020: 1232). */
export const EDNS_UDP_SIZE = 1232;

/**
 * Builds an answer with no records for `query`: the same id, question and RD bit, QR and RA set, the given rcode,
 * and an OPT record when the query had one (RFC 6891 section 7). Used for SERVFAIL, FORMERR and NOTIMP.
 */
export function emptyAnswer(query: Uint8Array, info: MessageInfo, rcode: number): Uint8Array {
  const q = info.question;
  const qBytes = q && info.qdcount === 1 ? query.subarray(q.start, q.end) : new Uint8Array(0);
  const optLen = info.opt ? 11 : 0;
  const out = new Uint8Array(HEADER_LEN + qBytes.length + optLen);
  setU16(out, 0, info.id);
  setU16(out, 2, Flags.QR | Flags.RA | (info.flags & (Flags.RD | Flags.CD)) | (info.opcode << 11) | (rcode & 0xf));
  setU16(out, 4, qBytes.length ? 1 : 0);
  setU16(out, 10, info.opt ? 1 : 0);
  out.set(qBytes, HEADER_LEN);
  if (info.opt) writeOpt(out, HEADER_LEN + qBytes.length);
  return out;
}

/** An 11-byte OPT record: root owner, type 41, our UDP size, no extended rcode, no flags, no options. */
function writeOpt(out: Uint8Array, o: number): void {
  out[o] = 0;
  setU16(out, o + 1, RrType.OPT);
  setU16(out, o + 3, EDNS_UDP_SIZE);
  setU32(out, o + 5, 0);
  setU16(out, o + 9, 0);
}

/**
 * Cuts an answer down to header, question and OPT with TC set (RFC 1035 section 4.1.1, RFC 2181 section 9), so the
 * client asks again over TCP. Returns the answer itself when it fits in `limit`.
 */
export function truncateAnswer(answer: Uint8Array, info: MessageInfo, limit: number): Uint8Array {
  if (answer.length <= limit) return answer;
  const q = info.question;
  const qBytes = q ? answer.subarray(q.start, q.end) : new Uint8Array(0);
  const opt = info.opt ? answer.subarray(info.opt.start, info.opt.end) : new Uint8Array(0);
  const keepOpt = HEADER_LEN + qBytes.length + opt.length <= limit;
  const out = new Uint8Array(HEADER_LEN + qBytes.length + (keepOpt ? opt.length : 0));
  out.set(answer.subarray(0, 4), 0);
  setU16(out, 2, info.flags | Flags.TC);
  setU16(out, 4, qBytes.length ? 1 : 0);
  setU16(out, 10, keepOpt && opt.length ? 1 : 0);
  out.set(qBytes, HEADER_LEN);
  if (keepOpt) out.set(opt, HEADER_LEN + qBytes.length);
  return out;
}
