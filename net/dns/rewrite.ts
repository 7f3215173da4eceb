/**
 * Renaming inside a DNS message, for short names: `echo.default` is asked of the cluster as
 * `echo.default.svc.cluster.local`, and the cluster's answer is given back under the name the client asked.
 *
 * The message is rebuilt without compression (RFC 1035 section 4.1.4 allows any mix), because changing one name's
 * length moves every later offset. Names inside RDATA are expanded for the types whose RDATA may hold compression
 * pointers (RFC 3597 section 4), by `message.ts`'s `readName`; other RDATA is copied byte for byte.
 */
import { HEADER_LEN, type MessageInfo, readName, setU16 } from "./message.ts";

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
    const wire: number[] = [];
    const owner = readName(buf, r.start, r.end, wire);
    if (!owner) return null;
    if (owner.name === rename.from) out.push(...rename.to);
    else out.push(...wire);
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
        const n = readName(buf, o, r.end, rdata);
        if (!n) return null;
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
