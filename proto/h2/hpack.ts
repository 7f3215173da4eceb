/**
 * HPACK, the header compression of HTTP/2 (RFC 7541).
 *
 * Covered: the static table (Appendix A), the Huffman code (Appendix B, section 5.2), N-bit prefix integers
 * (section 5.1), string literals (section 5.2), and every field representation of section 6. The decoder keeps the
 * dynamic table (section 4: entry size is name octets + value octets + 32, eviction of the oldest entries, entries
 * larger than the table empty it) and applies size updates (section 6.3: only at the start of a block, never above
 * our SETTINGS_HEADER_TABLE_SIZE). A malformed block throws {@link HpackError}; the caller ends the connection with
 * COMPRESSION_ERROR (RFC 9113 section 4.3).
 *
 * Omitted, on purpose: the encoder never inserts into the peer's dynamic table. It sends static-table indexes and
 * literals "without indexing", so it keeps no state, never needs the peer's table size for its own entries, and
 * cannot get out of step with the peer. That costs some bytes on repeated headers; for the few headers we send per
 * stream it does not matter. One consequence for the connection: a peer that lowers SETTINGS_HEADER_TABLE_SIZE
 * below 4096 may expect a size update at the start of our next block (nghttp2 requires one); the connection can
 * prepend the byte 0x20 (size update to 0) to that block, which stays valid for any later setting.
 * The decoder cannot be told to shrink its table after construction (no SETTINGS change mid-connection).
 *
 * @module
 */

/** A header field list in order; names are lowercase. */
export type HeaderList = [name: string, value: string][];

/** A malformed header block: the connection must end with COMPRESSION_ERROR (RFC 9113 section 4.3). */
export class HpackError extends Error {
  override name = "HpackError";
}

// --- Static table (RFC 7541 Appendix A) ---

const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];
const STATIC_COUNT = 61;

/** Per static name: the first index carrying it, and the index of each value it is listed with. */
const STATIC_BY_NAME = new Map<string, { index: number; values: Map<string, number> }>();
STATIC_TABLE.forEach(([name, value], i) => {
  let e = STATIC_BY_NAME.get(name);
  if (e === undefined) STATIC_BY_NAME.set(name, e = { index: i + 1, values: new Map() });
  if (!e.values.has(value)) e.values.set(value, i + 1);
});

/** Names sent as "never indexed" (RFC 7541 section 7.1.3): credentials an intermediary must not put in a table. */
const SENSITIVE = new Set(["authorization", "cookie", "proxy-authorization"]);

/** RFC 7541 section 4.1: an entry's size is its name and value lengths in octets plus 32. */
const ENTRY_OVERHEAD = 32;

// --- Huffman code (RFC 7541 Appendix B) ---

/**
 * Code length in bits of each symbol 0..255 and EOS (256), transcribed from Appendix B. The code is canonical
 * (section 5.2 cites [CANONICAL]): codes are assigned in order of (length, symbol), so the lengths determine them.
 * hpack_test.ts checks every derived code against the table's "code as hex" column.
 */
// deno-fmt-ignore
const HUFF_LEN = Uint8Array.from([
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //   0..15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //  16..31
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //          32..47  ' ' .. '/'
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //               48..63  '0' .. '?'
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //                 64..79  '@' .. 'O'
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //              80..95  'P' .. '_'
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //                 96..111 '`' .. 'o'
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //            112..127 'p' .. DEL
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128..143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144..159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160..175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176..191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192..207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208..223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224..239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240..255
  30, //                                                             256 EOS
]);
const EOS = 256;

/** Code of each symbol, aligned to the least significant bit. */
const HUFF_CODE = new Uint32Array(257);
{
  let code = 0;
  let prevLen = 0;
  for (let len = 5; len <= 30; len++) {
    for (let sym = 0; sym <= EOS; sym++) {
      if (HUFF_LEN[sym] !== len) continue;
      code <<= len - prevLen;
      prevLen = len;
      HUFF_CODE[sym] = code++;
    }
  }
  if (code !== 2 ** 30) throw new Error("HPACK Huffman lengths do not form a complete code"); // Kraft sum 1
}

/*
 * Decoding is a finite-state machine that reads four bits at a time. Its states are the 256 internal nodes of the
 * code tree (root = 0). An entry of HUFF_FSM, at (state << 4 | nibble), holds the next state, and whether a symbol
 * was completed on the way (at most one per nibble: every code has at least 5 bits) or EOS was reached (an error,
 * RFC 7541 section 5.2). HUFF_ACCEPT marks the states a string may end in: the root, or the all-ones path below it
 * at most 7 bits deep (padding is a prefix of EOS, shorter than 8 bits).
 */
const FSM_EMIT = 0x100;
const FSM_FAIL = 0x200;
const HUFF_FSM = new Uint32Array(256 * 16);
const HUFF_ACCEPT = new Uint8Array(256);
{
  // tree[2 * node + bit]: an internal node id (> 0), or ~symbol for a leaf (< 0); 0 while unset.
  const tree = new Int32Array(2 * 256);
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const len = HUFF_LEN[sym]!;
    const code = HUFF_CODE[sym]!;
    let node = 0;
    for (let i = len - 1; i > 0; i--) {
      const slot = 2 * node + ((code >>> i) & 1);
      if (tree[slot] === 0) tree[slot] = nodes++;
      node = tree[slot]!;
    }
    tree[2 * node + (code & 1)] = ~sym;
  }
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const child = tree[2 * node + ((nibble >>> i) & 1)]!;
        if (child >= 0) {
          node = child;
          continue;
        }
        const sym = ~child;
        if (sym === EOS) {
          entry |= FSM_FAIL;
          break;
        }
        entry |= FSM_EMIT | (sym << 16);
        node = 0;
      }
      HUFF_FSM[(state << 4) | nibble] = entry | node;
    }
  }
  if (nodes !== 256) throw new Error(`HPACK Huffman tree has ${nodes} internal nodes, expected 256`);
  let node = 0;
  for (let depth = 0; depth <= 7; depth++) {
    HUFF_ACCEPT[node] = 1;
    node = tree[2 * node + 1]!;
  }
}

/** Length in octets of `bytes[0..n)` Huffman-coded, padding included. */
function huffmanLength(bytes: Uint8Array, n: number): number {
  let bits = 0;
  for (let i = 0; i < n; i++) bits += HUFF_LEN[bytes[i]!]!;
  return (bits + 7) >>> 3;
}

/**
 * Writes `src[0..n)` Huffman-coded into `out` at `pos`, padded with the high bits of EOS (all ones); returns the
 * new position. `out` must have room for huffmanLength(src, n) octets.
 */
function huffmanWrite(src: Uint8Array, n: number, out: Uint8Array, pos: number): number {
  let acc = 0; // pending bits, fewer than 8 between symbols
  let bits = 0;
  for (let i = 0; i < n; i++) {
    const sym = src[i]!;
    let len = HUFF_LEN[sym]!;
    const code = HUFF_CODE[sym]!;
    if (len > 16) {
      // Push the high part first so that acc stays under 32 bits.
      acc = (acc << (len - 16)) | (code >>> 16);
      bits += len - 16;
      while (bits >= 8) out[pos++] = acc >>> (bits -= 8);
      acc &= (1 << bits) - 1;
      len = 16;
    }
    acc = (acc << len) | (code & 0xffff);
    bits += len;
    while (bits >= 8) out[pos++] = acc >>> (bits -= 8);
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out[pos++] = (acc << (8 - bits)) | (0xff >>> bits);
  return pos;
}

/** Huffman-codes `bytes` (RFC 7541 section 5.2). Exported for tests and tools; the encoder writes in place. */
export function huffmanEncode(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(huffmanLength(bytes, bytes.length));
  huffmanWrite(bytes, bytes.length, out, 0);
  return out;
}

/**
 * Decodes `src[start..end)` into `out` (at least (end - start) * 8 / 5 octets long); returns the decoded length.
 * Throws HpackError on EOS in the data, or padding that is longer than 7 bits or not all ones.
 */
function huffmanRead(src: Uint8Array, start: number, end: number, out: Uint8Array): number {
  let state = 0;
  let n = 0;
  for (let i = start; i < end; i++) {
    const b = src[i]!;
    let e = HUFF_FSM[(state << 4) | (b >>> 4)]!;
    if (e & FSM_FAIL) throw new HpackError("Huffman string contains EOS");
    if (e & FSM_EMIT) out[n++] = e >>> 16;
    e = HUFF_FSM[((e & 0xff) << 4) | (b & 0x0f)]!;
    if (e & FSM_FAIL) throw new HpackError("Huffman string contains EOS");
    if (e & FSM_EMIT) out[n++] = e >>> 16;
    state = e & 0xff;
  }
  if (HUFF_ACCEPT[state] === 0) throw new HpackError("Huffman string has invalid padding");
  return n;
}

/** Decodes a Huffman-coded string (RFC 7541 section 5.2). Exported for tests and tools. Throws HpackError. */
export function huffmanDecode(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.floor((bytes.length * 8) / 5));
  return out.slice(0, huffmanRead(bytes, 0, bytes.length, out));
}

// --- Strings ---

const utf8Decoder = new TextDecoder("utf-8", { fatal: false });
const utf8Encoder = new TextEncoder();

/** Decodes UTF-8 (replacing invalid sequences), with a fast path for short ASCII, the common case. */
function bytesToString(b: Uint8Array, start: number, end: number): string {
  if (end - start > 64) return utf8Decoder.decode(b.subarray(start, end));
  let s = "";
  for (let i = start; i < end; i++) {
    const c = b[i]!;
    if (c >= 0x80) return utf8Decoder.decode(b.subarray(start, end));
    s += String.fromCharCode(c);
  }
  return s;
}

// --- Decoder ---

/** Largest integer we accept (RFC 7541 section 5.1 leaves the limit to the implementation). */
const MAX_INT = 0x7fffffff;
/** Continuation octets that MAX_INT may need: 31 bits at 7 per octet. */
const MAX_INT_OCTETS = 5;

export class HpackDecoder {
  /** Optional cap on total decoded size (sum of name+value+32), default 64 KiB: over it throws HpackError. */
  maxHeaderListSize = 64 * 1024;

  readonly #maxTableSize: number;
  /** The peer's current table size limit (RFC 7541 section 4.2), changed by size updates. */
  #capacity: number;
  /** Octets in use, by the section 4.1 measure. */
  #size = 0;
  // The dynamic table as a ring: the newest entry at #head, older ones after it. Length a power of two.
  #names: string[] = new Array(16).fill("");
  #values: string[] = new Array(16).fill("");
  #sizes = new Uint32Array(16);
  #nameLens = new Uint32Array(16);
  #head = 0;
  #count = 0;

  #block: Uint8Array = new Uint8Array(0);
  #pos = 0;
  /** Octet length of the last string read, for entry sizes (a decoded JS string's length is not its octets). */
  #lastLen = 0;
  #scratch = new Uint8Array(256);

  /** maxTableSize: our SETTINGS_HEADER_TABLE_SIZE (default 4096); the peer's size updates may not exceed it. */
  constructor(maxTableSize = 4096) {
    if (!Number.isInteger(maxTableSize) || maxTableSize < 0 || maxTableSize > MAX_INT) {
      throw new RangeError(`Invalid HPACK table size ${maxTableSize}`);
    }
    this.#maxTableSize = maxTableSize;
    this.#capacity = maxTableSize;
  }

  /** Octets in use in the dynamic table (RFC 7541 section 4.1 sizes), for tests and diagnostics. */
  get dynamicTableSize(): number {
    return this.#size;
  }

  /** Decodes one complete header block (HEADERS + CONTINUATION payloads already joined). Throws HpackError. */
  decode(block: Uint8Array): HeaderList {
    this.#block = block;
    this.#pos = 0;
    const out: HeaderList = [];
    let listSize = 0;
    try {
      while (this.#pos < block.length) {
        const b = block[this.#pos]!;
        let name: string;
        let value: string;
        let entrySize: number;
        if (b & 0x80) {
          // Indexed header field (section 6.1).
          const index = this.#readInt(7);
          if (index === 0) throw new HpackError("Indexed header field with index 0");
          if (index <= STATIC_COUNT) {
            const e = STATIC_TABLE[index - 1]!;
            name = e[0];
            value = e[1];
            entrySize = name.length + value.length + ENTRY_OVERHEAD;
          } else {
            const slot = this.#slot(index);
            name = this.#names[slot]!;
            value = this.#values[slot]!;
            entrySize = this.#sizes[slot]!;
          }
        } else if ((b & 0xe0) === 0x20) {
          // Dynamic table size update (section 6.3), allowed only before the first field (section 4.2).
          if (out.length > 0) throw new HpackError("Dynamic table size update after a header field");
          const size = this.#readInt(5);
          if (size > this.#maxTableSize) {
            throw new HpackError(`Dynamic table size update to ${size} exceeds the limit ${this.#maxTableSize}`);
          }
          this.#capacity = size;
          this.#evictTo(size);
          continue;
        } else {
          // Literal header field (section 6.2): with incremental indexing (01, 6-bit index), or without
          // indexing (0000) or never indexed (0001), both with a 4-bit index.
          const indexing = (b & 0x40) !== 0;
          const index = this.#readInt(indexing ? 6 : 4);
          let nameLen: number;
          if (index === 0) {
            name = this.#readString();
            nameLen = this.#lastLen;
          } else if (index <= STATIC_COUNT) {
            name = STATIC_TABLE[index - 1]![0];
            nameLen = name.length;
          } else {
            const slot = this.#slot(index);
            name = this.#names[slot]!;
            nameLen = this.#nameLens[slot]!;
          }
          value = this.#readString();
          entrySize = nameLen + this.#lastLen + ENTRY_OVERHEAD;
          if (indexing) this.#insert(name, value, nameLen, entrySize);
        }
        listSize += entrySize;
        if (listSize > this.maxHeaderListSize) {
          throw new HpackError(`Header list exceeds ${this.maxHeaderListSize} octets`);
        }
        out.push([name, value]);
      }
    } finally {
      this.#block = new Uint8Array(0);
    }
    return out;
  }

  /** Reads an integer with an N-bit prefix (section 5.1) at the current position. */
  #readInt(prefixBits: number): number {
    const block = this.#block;
    const mask = (1 << prefixBits) - 1;
    let value = block[this.#pos++]! & mask;
    if (value < mask) return value;
    for (let i = 0; i < MAX_INT_OCTETS; i++) {
      if (this.#pos >= block.length) throw new HpackError("Truncated integer");
      const b = block[this.#pos++]!;
      value += (b & 0x7f) * 2 ** (7 * i);
      if (value > MAX_INT) throw new HpackError(`Integer exceeds ${MAX_INT}`);
      if ((b & 0x80) === 0) return value;
    }
    throw new HpackError(`Integer has more than ${MAX_INT_OCTETS} continuation octets`);
  }

  /** Reads a string literal (section 5.2); leaves its length in octets in #lastLen. */
  #readString(): string {
    const block = this.#block;
    if (this.#pos >= block.length) throw new HpackError("Truncated header block: string expected");
    const huffman = (block[this.#pos]! & 0x80) !== 0;
    const len = this.#readInt(7);
    const start = this.#pos;
    const end = start + len;
    if (end > block.length) throw new HpackError(`String length ${len} runs past the end of the header block`);
    this.#pos = end;
    if (!huffman) {
      this.#lastLen = len;
      return bytesToString(block, start, end);
    }
    const max = Math.floor((len * 8) / 5);
    if (this.#scratch.length < max) this.#scratch = new Uint8Array(Math.max(max, 2 * this.#scratch.length));
    const n = huffmanRead(block, start, end, this.#scratch);
    this.#lastLen = n;
    return bytesToString(this.#scratch, 0, n);
  }

  /** The ring slot of dynamic table entry `index` (62 = newest), or HpackError if there is none. */
  #slot(index: number): number {
    const d = index - STATIC_COUNT - 1;
    if (d >= this.#count) throw new HpackError(`Header table index ${index} out of range`);
    return (this.#head + d) & (this.#names.length - 1);
  }

  /** Adds an entry (section 4.4): evicts the oldest until it fits; one larger than the table just empties it. */
  #insert(name: string, value: string, nameLen: number, size: number): void {
    if (size > this.#capacity) {
      this.#evictTo(0);
      return;
    }
    this.#evictTo(this.#capacity - size);
    if (this.#count === this.#names.length) this.#grow();
    const mask = this.#names.length - 1;
    this.#head = (this.#head - 1) & mask;
    this.#names[this.#head] = name;
    this.#values[this.#head] = value;
    this.#sizes[this.#head] = size;
    this.#nameLens[this.#head] = nameLen;
    this.#count++;
    this.#size += size;
  }

  /** Evicts the oldest entries until the table uses at most `limit` octets (section 4.3). */
  #evictTo(limit: number): void {
    const mask = this.#names.length - 1;
    while (this.#size > limit) {
      const slot = (this.#head + this.#count - 1) & mask;
      this.#size -= this.#sizes[slot]!;
      this.#names[slot] = "";
      this.#values[slot] = "";
      this.#count--;
    }
  }

  #grow(): void {
    const n = this.#names.length;
    const names: string[] = new Array(2 * n).fill("");
    const values: string[] = new Array(2 * n).fill("");
    const sizes = new Uint32Array(2 * n);
    const nameLens = new Uint32Array(2 * n);
    for (let i = 0; i < this.#count; i++) {
      const slot = (this.#head + i) & (n - 1);
      names[i] = this.#names[slot]!;
      values[i] = this.#values[slot]!;
      sizes[i] = this.#sizes[slot]!;
      nameLens[i] = this.#nameLens[slot]!;
    }
    this.#names = names;
    this.#values = values;
    this.#sizes = sizes;
    this.#nameLens = nameLens;
    this.#head = 0;
  }
}

// --- Encoder ---

export class HpackEncoder {
  #out = new Uint8Array(1024);
  #pos = 0;
  #ascii = new Uint8Array(256);

  /** Encodes a header list. Uses the static table (full match: indexed; name match: literal with name index),
   *  literal WITHOUT indexing for everything else (no dynamic table state, so the encoder never needs the peer's
   *  table size), "never indexed" for sensitive names (authorization, cookie, proxy-authorization).
   *  Huffman-encodes a string only when that is shorter. */
  encode(headers: HeaderList): Uint8Array {
    this.#pos = 0;
    for (const [name, value] of headers) {
      const entry = STATIC_BY_NAME.get(name);
      if (SENSITIVE.has(name)) {
        // Literal never indexed (section 6.2.3).
        this.#writeNameRef(0x10, entry, name);
      } else {
        const full = entry?.values.get(value);
        if (full !== undefined) {
          // Indexed header field (section 6.1).
          this.#reserve(5);
          this.#writeInt(full, 7, 0x80);
          continue;
        }
        // Literal without indexing (section 6.2.2).
        this.#writeNameRef(0x00, entry, name);
      }
      this.#writeString(value);
    }
    return this.#out.slice(0, this.#pos);
  }

  /** Writes the first octet(s) of a 4-bit-prefix literal: a static name index, or 0 and the name. */
  #writeNameRef(flags: number, entry: { index: number } | undefined, name: string): void {
    this.#reserve(5);
    if (entry !== undefined) {
      this.#writeInt(entry.index, 4, flags);
    } else {
      this.#out[this.#pos++] = flags;
      this.#writeString(name);
    }
  }

  /** Writes a string literal (section 5.2), Huffman-coded when that is strictly shorter. */
  #writeString(s: string): void {
    let bytes = this.#ascii;
    let len = s.length;
    if (len <= bytes.length && isAscii(s)) {
      for (let i = 0; i < len; i++) bytes[i] = s.charCodeAt(i);
    } else {
      bytes = utf8Encoder.encode(s);
      len = bytes.length;
    }
    const hlen = huffmanLength(bytes, len);
    this.#reserve(5 + Math.min(len, hlen));
    if (hlen < len) {
      this.#writeInt(hlen, 7, 0x80);
      this.#pos = huffmanWrite(bytes, len, this.#out, this.#pos);
    } else {
      this.#writeInt(len, 7, 0x00);
      this.#out.set(bytes.subarray(0, len), this.#pos);
      this.#pos += len;
    }
  }

  /** Writes an integer with an N-bit prefix (section 5.1); the caller has reserved 5 octets. */
  #writeInt(value: number, prefixBits: number, flags: number): void {
    const out = this.#out;
    const mask = (1 << prefixBits) - 1;
    if (value < mask) {
      out[this.#pos++] = flags | value;
      return;
    }
    out[this.#pos++] = flags | mask;
    value -= mask;
    while (value >= 0x80) {
      out[this.#pos++] = (value & 0x7f) | 0x80;
      value = Math.floor(value / 0x80);
    }
    out[this.#pos++] = value;
  }

  #reserve(n: number): void {
    if (this.#pos + n <= this.#out.length) return;
    const out = new Uint8Array(Math.max(2 * this.#out.length, this.#pos + n));
    out.set(this.#out.subarray(0, this.#pos));
    this.#out = out;
  }
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}
