/**
 * Renaming inside a DNS message, for short names: `echo.default` is asked of the cluster as
 * `echo.default.svc.cluster.local`, and the cluster's answer is given back under the name the client asked.
 *
 * The message is rebuilt without compression (RFC 1035 section 4.1.4 allows any mix), because changing one name's
 * length moves every later offset. Names inside RDATA are expanded for the types whose RDATA may hold compression
 * pointers (RFC 3597 section 4); other RDATA is copied byte for byte.
 */
import { HEADER_LEN, labelText, type MessageInfo, setU16 } from "./message.ts";

/** RDATA layouts with names: a number is that many fixed bytes, "name" is a (possibly compressed) name. */
const NAME_LAYOUTS: Record<number, (number | "name")[]> = {
  2: ["name"], // NS
  3: ["name"], // MD
  4: ["name"], // MF
  5: ["name"], // CNAME
  6: ["name", "name", 20], // SOA: MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM
  7: ["name"], // MB
  8: ["name"], // MG
  9: ["name"], // MR
  12: ["name"], // PTR
  14: ["name", "name"], // MINFO
  15: [2, "name"], // MX
  17: ["name", "name"], // RP
  18: [2, "name"], // AFSDB
  21: [2, "name"], // RT
  26: [2, "name", "name"], // PX
  33: [6, "name"], // SRV: PRIORITY WEIGHT PORT TARGET
  36: [2, "name"], // KX
  39: ["name"], // DNAME
};

/** A name's wire bytes with pointers expanded (letter case kept), its lower-case text, and where it ends in place. */
function expandName(
  buf: Uint8Array,
  offset: number,
  limit: number,
): { wire: number[]; text: string; end: number } | null {
  const wire: number[] = [];
  const labels: string[] = [];
  let o = offset;
  let end = -1;
  let lowest = offset;
  for (let hops = 0; hops < 128; hops++) {
    if (o >= (end < 0 ? limit : buf.length)) return null;
    const len = buf[o]!;
    if (len === 0) {
      wire.push(0);
      return wire.length <= 255 ? { wire, text: labels.join("."), end: end < 0 ? o + 1 : end } : null;
    }
    if ((len & 0xc0) === 0xc0) {
      if (o + 1 >= buf.length) return null;
      const target = ((len & 0x3f) << 8) | buf[o + 1]!;
      if (end < 0) end = o + 2;
      if (target >= lowest) return null;
      lowest = target;
      o = target;
      continue;
    }
    if ((len & 0xc0) !== 0 || o + 1 + len > buf.length) return null;
    const label = buf.subarray(o + 1, o + 1 + len);
    wire.push(len, ...label);
    labels.push(labelText(buf, o + 1, len));
    if (wire.length > 255) return null;
    o += 1 + len;
  }
  return null;
}

/**
 * Rebuilds `buf` (scanned as `info`, exactly one question) with `question` (wire bytes: name, type, class) as its
 * question, and every record owned by `from` (normalised) owned by `to` (wire name) instead. Returns null when a
 * record's RDATA does not match its type's layout.
 */
export function renameMessage(
  buf: Uint8Array,
  info: MessageInfo,
  rename: { question: Uint8Array; from: string; to: Uint8Array },
): Uint8Array | null {
  const out: number[] = [];
  for (let i = 0; i < HEADER_LEN; i++) out.push(buf[i]!);
  out.push(...rename.question);
  const q = info.question;
  if (!q || info.qdcount !== 1) return null;
  // Records after the question, the OPT included, in their original order.
  const all = [...info.records.map((r) => ({ start: r.start, end: r.end }))];
  if (info.opt) all.push({ start: info.opt.start, end: info.opt.end });
  all.sort((a, b) => a.start - b.start);
  for (const r of all) {
    const owner = expandName(buf, r.start, r.end);
    if (!owner) return null;
    if (owner.text === rename.from) out.push(...rename.to);
    else out.push(...owner.wire);
    const type = (buf[owner.end]! << 8) | buf[owner.end + 1]!;
    for (let i = owner.end; i < owner.end + 8; i++) out.push(buf[i]!);
    const rdStart = owner.end + 10;
    const layout = NAME_LAYOUTS[type];
    if (!layout) {
      for (let i = owner.end + 8; i < r.end; i++) out.push(buf[i]!);
      continue;
    }
    const rdata: number[] = [];
    let o = rdStart;
    for (const part of layout) {
      if (part === "name") {
        const n = expandName(buf, o, r.end);
        if (!n) return null;
        rdata.push(...n.wire);
        o = n.end;
      } else {
        if (o + part > r.end) return null;
        for (let i = o; i < o + part; i++) rdata.push(buf[i]!);
        o += part;
      }
    }
    if (o !== r.end || rdata.length > 0xffff) return null;
    out.push(rdata.length >>> 8, rdata.length & 0xff, ...rdata);
  }
  if (out.length > 0xffff) return null;
  const bytes = Uint8Array.from(out);
  setU16(bytes, 4, 1);
  return bytes;
}
