/**
 * The D-Bus wire format (D-Bus Specification, https://dbus.freedesktop.org/doc/dbus-specification.html): type
 * signatures, marshalling of values with their alignment, and messages (the fixed header as a view, header fields,
 * body). Pure: no I/O. The connection that uses it is in dbus.ts.
 *
 * Messages go out little-endian; messages in either byte order are read. Values map to JavaScript as:
 * y n q i u d -> number; x t -> bigint (a safe-integer number is accepted when sending); b -> boolean;
 * s o g -> string; ay -> Uint8Array (a number[] is accepted when sending); a{kv} -> Map (an array of [k, v] pairs is
 * accepted when sending); other arrays and structs -> arrays; v -> DBusVariant.
 */
import { errorMessage } from "../../base/error_message.ts";

// ---------------------------------------------------------------------------------------------------------------------
// Type signatures ("Type System", "Valid Signatures")

type BasicCode = "y" | "b" | "n" | "q" | "i" | "u" | "x" | "t" | "d" | "s" | "o" | "g";

/** One complete type, parsed from a signature. */
export type DBusType =
  | { readonly code: BasicCode }
  | { readonly code: "v" }
  | { readonly code: "a"; readonly element: DBusType }
  | { readonly code: "("; readonly fields: readonly DBusType[] }
  | { readonly code: "{"; readonly key: DBusType; readonly value: DBusType };

const BASIC_CODES = "ybnqiuxtdsog";
/** "The maximum length of a signature is 255." */
const MAX_SIGNATURE = 255;
/** "The maximum depth of container type nesting is 32 array type codes and 32 open parentheses." */
const MAX_NESTING = 32;
/** "Arrays have a maximum length defined to be 2 to the 26th power or 67108864 (64 MiB)." */
const MAX_ARRAY_BYTES = 1 << 26;
/** "The maximum length of a message, including header, header alignment padding, and body is 2 to the 27th power." */
const MAX_MESSAGE_BYTES = 1 << 27;
/** Containers plus variants deep, when reading: the nesting limits above, applied to the value. */
const MAX_VALUE_DEPTH = 64;

/** Parses a signature into its complete types ("ia(iay)" -> int32, array of struct). */
export function parseSignature(signature: string): DBusType[] {
  const fail = (why: string): never => {
    throw new SyntaxError(`Cannot parse D-Bus signature "${signature}": ${why}`);
  };
  if (signature.length > MAX_SIGNATURE) fail(`longer than ${MAX_SIGNATURE} characters`);
  let pos = 0;
  const one = (arrays: number, structs: number): DBusType => {
    const c = signature[pos++];
    if (c === undefined) return fail("it ends in the middle of a type");
    if (BASIC_CODES.includes(c)) return { code: c as BasicCode };
    if (c === "v") return { code: "v" };
    if (c === "a") {
      if (arrays >= MAX_NESTING) fail(`arrays nest deeper than ${MAX_NESTING}`);
      if (signature[pos] !== "{") return { code: "a", element: one(arrays + 1, structs) };
      // A dict entry: only as an array's element, a basic key, one value ("Valid Signatures").
      pos++;
      if (structs >= MAX_NESTING) fail(`structs nest deeper than ${MAX_NESTING}`);
      const key = one(arrays + 1, structs + 1);
      if (!BASIC_CODES.includes(key.code)) fail("a dict entry's key must be a basic type");
      const value = one(arrays + 1, structs + 1);
      if (signature[pos++] !== "}") fail("a dict entry must hold exactly a key and a value");
      return { code: "a", element: { code: "{", key, value } };
    }
    if (c === "(") {
      if (structs >= MAX_NESTING) fail(`structs nest deeper than ${MAX_NESTING}`);
      const fields: DBusType[] = [];
      while (signature[pos] !== ")") {
        if (pos >= signature.length) fail("a struct is not closed");
        fields.push(one(arrays, structs + 1));
      }
      pos++;
      if (!fields.length) fail("a struct must have at least one field");
      return { code: "(", fields };
    }
    return fail(`unexpected "${c}" at ${pos - 1}`);
  };
  const types: DBusType[] = [];
  while (pos < signature.length) types.push(one(0, 0));
  return types;
}

/** The signature of one type (the inverse of parseSignature). */
export function typeSignature(t: DBusType): string {
  switch (t.code) {
    case "a":
      return `a${typeSignature(t.element)}`;
    case "(":
      return `(${t.fields.map(typeSignature).join("")})`;
    case "{":
      return `{${typeSignature(t.key)}${typeSignature(t.value)}}`;
    default:
      return t.code;
  }
}

/** "Marshaling (Wire Format)": each type starts at a multiple of its alignment, counted from the message's start. */
function alignOf(t: DBusType): number {
  switch (t.code) {
    case "y":
    case "g":
    case "v":
      return 1;
    case "n":
    case "q":
      return 2;
    case "b":
    case "i":
    case "u":
    case "s":
    case "o":
    case "a":
      return 4;
    case "x":
    case "t":
    case "d":
    case "(":
    case "{":
      return 8;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Values

/** A variant: a value and the signature of its one complete type. */
export class DBusVariant {
  constructor(readonly signature: string, readonly value: unknown) {}
}

/** A value read from the wire. */
export type DBusValue =
  | number
  | bigint
  | boolean
  | string
  | Uint8Array
  | DBusValue[]
  | Map<DBusValue, DBusValue>
  | DBusVariant;

const OBJECT_PATH = /^\/$|^(\/[A-Za-z0-9_]+)+$/;
export const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** A growing little-endian buffer. Offsets are from its start, which must be 8-aligned in the message. */
class Writer {
  #buf = new Uint8Array(256);
  #view = new DataView(this.#buf.buffer);
  length = 0;

  /** Makes room for n bytes and returns where they go. Evaluate it before reading #buf: it may replace it. */
  #reserve(n: number): number {
    const at = this.length;
    if (at + n > this.#buf.length) {
      const grown = new Uint8Array(Math.max(this.#buf.length * 2, at + n));
      grown.set(this.#buf.subarray(0, at));
      this.#buf = grown;
      this.#view = new DataView(grown.buffer);
    }
    this.length += n;
    return at;
  }
  /** Zero bytes up to the next multiple of `align` ("alignment padding must be null-filled"). */
  pad(align: number): void {
    const n = (align - (this.length % align)) % align;
    const at = this.#reserve(n);
    this.#buf.fill(0, at, at + n);
  }
  u8(v: number): void {
    const at = this.#reserve(1);
    this.#buf[at] = v;
  }
  u16(v: number): void {
    this.pad(2);
    const at = this.#reserve(2);
    this.#view.setUint16(at, v, true);
  }
  u32(v: number): void {
    this.pad(4);
    const at = this.#reserve(4);
    this.#view.setUint32(at, v, true);
  }
  u64(v: bigint): void {
    this.pad(8);
    const at = this.#reserve(8);
    this.#view.setBigUint64(at, v, true);
  }
  f64(v: number): void {
    this.pad(8);
    const at = this.#reserve(8);
    this.#view.setFloat64(at, v, true);
  }
  bytes(b: Uint8Array): void {
    const at = this.#reserve(b.length);
    this.#buf.set(b, at);
  }
  setU32At(at: number, v: number): void {
    this.#view.setUint32(at, v, true);
  }
  result(): Uint8Array {
    return this.#buf.slice(0, this.length);
  }
}

/** A bounds-checked cursor over received bytes. Offsets are from `buf`'s start, 8-aligned in the message. */
class Reader {
  readonly #view: DataView;
  pos: number;

  constructor(readonly buf: Uint8Array, readonly littleEndian: boolean, pos = 0, readonly end = buf.length) {
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = pos;
  }

  #take(n: number, what: string): number {
    if (this.pos + n > this.end) throw malformed(`${what} runs past the end`);
    const at = this.pos;
    this.pos += n;
    return at;
  }
  align(align: number): void {
    const n = (align - (this.pos % align)) % align;
    const at = this.#take(n, "alignment padding");
    for (let i = at; i < at + n; i++) if (this.buf[i] !== 0) throw malformed(`padding byte at ${i} is not zero`);
  }
  u8(): number {
    return this.buf[this.#take(1, "a byte")]!;
  }
  u16(): number {
    this.align(2);
    return this.#view.getUint16(this.#take(2, "a 16-bit integer"), this.littleEndian);
  }
  u32(): number {
    this.align(4);
    return this.#view.getUint32(this.#take(4, "a 32-bit integer"), this.littleEndian);
  }
  u64(): bigint {
    this.align(8);
    return this.#view.getBigUint64(this.#take(8, "a 64-bit integer"), this.littleEndian);
  }
  f64(): number {
    this.align(8);
    return this.#view.getFloat64(this.#take(8, "a double"), this.littleEndian);
  }
  bytes(n: number, what: string): Uint8Array {
    const at = this.#take(n, what);
    return this.buf.subarray(at, at + n);
  }
}

function malformed(why: string): SyntaxError {
  return new SyntaxError(`Malformed D-Bus message: ${why}`);
}

function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "bigint") return `${v}n`;
  if (v instanceof Uint8Array) return `Uint8Array(${v.length})`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (v instanceof Map) return `a Map of ${v.size}`;
  return String(v);
}

function wrongType(t: DBusType, v: unknown): TypeError {
  return new TypeError(`Cannot marshal ${describe(v)} as D-Bus type "${typeSignature(t)}"`);
}

function integer(t: DBusType, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v)) throw wrongType(t, v);
  if (v < min || v > max) throw new RangeError(`Cannot marshal ${v} as D-Bus type "${t.code}": out of range`);
  return v;
}

function integer64(t: DBusType, v: unknown, signed: boolean): bigint {
  let b: bigint;
  if (typeof v === "bigint") b = v;
  else if (typeof v === "number" && Number.isSafeInteger(v)) b = BigInt(v);
  else throw wrongType(t, v);
  if (b !== (signed ? BigInt.asIntN(64, b) : BigInt.asUintN(64, b))) {
    throw new RangeError(`Cannot marshal ${b} as D-Bus type "${t.code}": out of range`);
  }
  return BigInt.asUintN(64, b);
}

function writeString(w: Writer, t: DBusType, v: unknown): void {
  if (typeof v !== "string" || v.includes("\0")) throw wrongType(t, v);
  if (t.code === "o" && !OBJECT_PATH.test(v)) throw new TypeError(`Cannot marshal "${v}" as an object path`);
  const b = utf8.encode(v);
  if (t.code === "g") {
    parseSignature(v);
    w.u8(b.length);
  } else {
    w.u32(b.length);
  }
  w.bytes(b);
  w.u8(0);
}

/** Marshals one value of type `t`. Throws TypeError or RangeError when the value does not fit the type. */
function writeValue(w: Writer, t: DBusType, v: unknown): void {
  switch (t.code) {
    case "y":
      return w.u8(integer(t, v, 0, 0xff));
    case "b":
      if (typeof v !== "boolean") throw wrongType(t, v);
      return w.u32(v ? 1 : 0);
    case "n":
      return w.u16(integer(t, v, -0x8000, 0x7fff) & 0xffff);
    case "q":
      return w.u16(integer(t, v, 0, 0xffff));
    case "i":
      return w.u32(integer(t, v, -0x80000000, 0x7fffffff) >>> 0);
    case "u":
      return w.u32(integer(t, v, 0, 0xffffffff));
    case "x":
      return w.u64(integer64(t, v, true));
    case "t":
      return w.u64(integer64(t, v, false));
    case "d":
      if (typeof v !== "number") throw wrongType(t, v);
      return w.f64(v);
    case "s":
    case "o":
    case "g":
      return writeString(w, t, v);
    case "v": {
      if (!(v instanceof DBusVariant)) throw wrongType(t, v);
      const inner = parseSignature(v.signature);
      if (inner.length !== 1) throw new TypeError(`A variant's signature must be one type, not "${v.signature}"`);
      writeString(w, { code: "g" }, v.signature);
      return writeValue(w, inner[0]!, v.value);
    }
    case "a": {
      // "A UINT32 giving the length of the array data in bytes, followed by alignment padding to the alignment
      // boundary of the array element type, followed by each array element." The padding is there even when empty.
      const el = t.element;
      w.u32(0);
      const lengthAt = w.length - 4;
      w.pad(alignOf(el));
      const start = w.length;
      if (el.code === "y" && v instanceof Uint8Array) w.bytes(v);
      else if (el.code === "{") {
        const entries = v instanceof Map ? [...v] : Array.isArray(v) ? v : null;
        if (!entries) throw wrongType(t, v);
        for (const e of entries) {
          if (!Array.isArray(e) || e.length !== 2) throw wrongType(el, e);
          w.pad(8);
          writeValue(w, el.key, e[0]);
          writeValue(w, el.value, e[1]);
        }
      } else {
        if (!Array.isArray(v)) throw wrongType(t, v);
        for (const e of v) writeValue(w, el, e);
      }
      const n = w.length - start;
      if (n > MAX_ARRAY_BYTES) {
        throw new RangeError(`A D-Bus array of ${n} bytes is over the limit of ${MAX_ARRAY_BYTES}`);
      }
      return w.setU32At(lengthAt, n);
    }
    case "(":
      if (!Array.isArray(v) || v.length !== t.fields.length) throw wrongType(t, v);
      w.pad(8);
      t.fields.forEach((f, i) => writeValue(w, f, v[i]));
      return;
    case "{":
      throw new TypeError("A dict entry can only be an array's element");
  }
}

function readString(r: Reader, t: DBusType): string {
  const n = t.code === "g" ? r.u8() : r.u32();
  const b = r.bytes(n + 1, `a string of ${n} bytes`);
  if (b[n] !== 0) throw malformed("a string is not NUL-terminated");
  let s: string;
  try {
    s = utf8Strict.decode(b.subarray(0, n));
  } catch {
    throw malformed("a string is not valid UTF-8");
  }
  if (s.includes("\0")) throw malformed("a string holds a NUL");
  if (t.code === "o" && !OBJECT_PATH.test(s)) throw malformed(`"${s}" is not an object path`);
  if (t.code === "g") {
    try {
      parseSignature(s);
    } catch (e) {
      throw malformed(errorMessage(e));
    }
  }
  return s;
}

function readValue(r: Reader, t: DBusType, depth: number): DBusValue {
  if (depth > MAX_VALUE_DEPTH) throw malformed(`values nest deeper than ${MAX_VALUE_DEPTH}`);
  switch (t.code) {
    case "y":
      return r.u8();
    case "b": {
      const b = r.u32();
      if (b > 1) throw malformed(`a boolean is ${b}`);
      return b === 1;
    }
    case "n":
      return (r.u16() << 16) >> 16;
    case "q":
      return r.u16();
    case "i":
      return r.u32() | 0;
    case "u":
      return r.u32();
    case "x":
      return BigInt.asIntN(64, r.u64());
    case "t":
      return r.u64();
    case "d":
      return r.f64();
    case "s":
    case "o":
    case "g":
      return readString(r, t);
    case "v": {
      const sig = readString(r, { code: "g" });
      const inner = parseSignature(sig);
      if (inner.length !== 1) throw malformed(`a variant's signature "${sig}" is not one type`);
      return new DBusVariant(sig, readValue(r, inner[0]!, depth + 1));
    }
    case "a": {
      const n = r.u32();
      if (n > MAX_ARRAY_BYTES) throw malformed(`an array of ${n} bytes is over the limit`);
      r.align(alignOf(t.element));
      if (r.pos + n > r.end) throw malformed(`an array of ${n} bytes runs past the end`);
      const end = r.pos + n;
      const el = t.element;
      if (el.code === "y") return r.bytes(n, "a byte array").slice();
      const out: DBusValue[] = [];
      const map = new Map<DBusValue, DBusValue>();
      while (r.pos < end) {
        if (el.code === "{") {
          r.align(8);
          const k = readValue(r, el.key, depth + 1);
          map.set(k, readValue(r, el.value, depth + 1));
        } else {
          out.push(readValue(r, el, depth + 1));
        }
      }
      if (r.pos !== end) throw malformed("an array's elements overrun its length");
      return el.code === "{" ? map : out;
    }
    case "(":
      r.align(8);
      return t.fields.map((f) => readValue(r, f, depth + 1));
    case "{":
      throw malformed("a dict entry outside an array");
  }
}

/** Marshals values to a body (which starts 8-aligned in a message) by signature. */
export function marshal(signature: string, values: readonly unknown[]): Uint8Array {
  const types = parseSignature(signature);
  if (types.length !== values.length) {
    throw new TypeError(`Signature "${signature}" has ${types.length} types but ${values.length} values were given`);
  }
  const w = new Writer();
  types.forEach((t, i) => writeValue(w, t, values[i]));
  return w.result();
}

/** Unmarshals a body by signature; every byte must be used. Throws SyntaxError on malformed bytes. */
export function unmarshal(signature: string, body: Uint8Array, littleEndian = true): DBusValue[] {
  const r = new Reader(body, littleEndian);
  const values = parseSignature(signature).map((t) => readValue(r, t, 0));
  if (r.pos !== body.length) throw malformed(`${body.length - r.pos} bytes left after the body's values`);
  return values;
}

// ---------------------------------------------------------------------------------------------------------------------
// Messages ("Message Format")

export const MessageType = { METHOD_CALL: 1, METHOD_RETURN: 2, ERROR: 3, SIGNAL: 4 } as const;
export type MessageType = typeof MessageType[keyof typeof MessageType];

/** Header flags: NO_REPLY_EXPECTED, NO_AUTO_START, ALLOW_INTERACTIVE_AUTHORIZATION. */
export const MessageFlag = {
  NO_REPLY_EXPECTED: 0x1,
  NO_AUTO_START: 0x2,
  ALLOW_INTERACTIVE_AUTHORIZATION: 0x4,
} as const;

/** "Header Fields": code and type. */
const FIELD = {
  PATH: 1,
  INTERFACE: 2,
  MEMBER: 3,
  ERROR_NAME: 4,
  REPLY_SERIAL: 5,
  DESTINATION: 6,
  SENDER: 7,
  SIGNATURE: 8,
  UNIX_FDS: 9,
} as const;

/** The fixed start of every message: endianness, type, flags, version, body length, serial, fields' length. */
export const FIXED_HEADER_LEN = 16;
export const LITTLE = 0x6c; // 'l'
const BIG = 0x42; // 'B'
const PROTOCOL_VERSION = 1;

/** A view over a message's fixed header; the checked constructor bounds the whole message's length. */
export class DBusHeaderView {
  readonly #view: DataView;

  constructor(readonly buffer: Uint8Array) {
    this.#view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }

  /** Needs the first 16 bytes; throws SyntaxError on a wrong byte order mark, version, or size. */
  static newChecked(buffer: Uint8Array): DBusHeaderView {
    if (buffer.length < FIXED_HEADER_LEN) throw malformed(`a header of ${buffer.length} bytes is too short`);
    const h = new DBusHeaderView(buffer);
    if (h.endianness !== LITTLE && h.endianness !== BIG) {
      throw malformed(`byte order mark 0x${h.endianness.toString(16)}`);
    }
    if (h.version !== PROTOCOL_VERSION) throw malformed(`protocol version ${h.version}`);
    if (h.messageLength > MAX_MESSAGE_BYTES) throw malformed(`a message of ${h.messageLength} bytes is too long`);
    return h;
  }

  get endianness(): number {
    return this.buffer[0]!;
  }
  get littleEndian(): boolean {
    return this.endianness === LITTLE;
  }
  get type(): number {
    return this.buffer[1]!;
  }
  get flags(): number {
    return this.buffer[2]!;
  }
  get version(): number {
    return this.buffer[3]!;
  }
  get bodyLength(): number {
    return this.#view.getUint32(4, this.littleEndian);
  }
  get serial(): number {
    return this.#view.getUint32(8, this.littleEndian);
  }
  /** The header fields array's length in bytes (from offset 16, which is already 8-aligned). */
  get fieldsLength(): number {
    return this.#view.getUint32(12, this.littleEndian);
  }
  /** The body starts after the fields, padded to 8. */
  get bodyOffset(): number {
    return Math.ceil((FIXED_HEADER_LEN + this.fieldsLength) / 8) * 8;
  }
  get messageLength(): number {
    return this.bodyOffset + this.bodyLength;
  }
}

/** A message's meaningful fields. */
export interface DBusMessage {
  type: MessageType;
  flags: number;
  /** Non-zero; replies carry the call's in `replySerial`. */
  serial: number;
  path?: string;
  interface?: string;
  member?: string;
  errorName?: string;
  replySerial?: number;
  destination?: string;
  sender?: string;
  /** The body's signature; "" for no body. */
  signature: string;
  body: readonly unknown[];
}

/** A message as read: its body's values are DBusValues. */
export interface ReceivedMessage extends DBusMessage {
  body: DBusValue[];
}

type HeaderKey = "path" | "interface" | "member" | "errorName" | "replySerial";
const REQUIRED: Record<MessageType, readonly HeaderKey[]> = {
  [MessageType.METHOD_CALL]: ["path", "member"],
  [MessageType.METHOD_RETURN]: ["replySerial"],
  [MessageType.ERROR]: ["errorName", "replySerial"],
  [MessageType.SIGNAL]: ["path", "interface", "member"],
};

/** The message's bytes: fields in code order, SIGNATURE omitted for an empty body. */
export function emitMessage(m: DBusMessage): Uint8Array {
  const missing = REQUIRED[m.type].filter((k) => m[k] === undefined);
  if (missing.length) throw new TypeError(`A D-Bus message of type ${m.type} needs ${missing.join(", ")}`);
  if (!Number.isInteger(m.serial) || m.serial < 1 || m.serial > 0xffffffff) {
    throw new RangeError(`A D-Bus serial must be 1..2^32-1, not ${m.serial}`);
  }
  const body = marshal(m.signature, m.body);
  const w = new Writer();
  w.u8(LITTLE);
  w.u8(m.type);
  w.u8(m.flags);
  w.u8(PROTOCOL_VERSION);
  w.u32(body.length);
  w.u32(m.serial);
  // The fields: a(yv), each struct 8-aligned; the array's length counts from offset 16.
  w.u32(0);
  const field = (code: number, t: DBusType, v: unknown) => {
    w.pad(8);
    w.u8(code);
    writeString(w, { code: "g" }, t.code);
    writeValue(w, t, v);
  };
  const s = { code: "s" } as const;
  if (m.path !== undefined) field(FIELD.PATH, { code: "o" }, m.path);
  if (m.interface !== undefined) field(FIELD.INTERFACE, s, m.interface);
  if (m.member !== undefined) field(FIELD.MEMBER, s, m.member);
  if (m.errorName !== undefined) field(FIELD.ERROR_NAME, s, m.errorName);
  if (m.replySerial !== undefined) field(FIELD.REPLY_SERIAL, { code: "u" }, m.replySerial);
  if (m.destination !== undefined) field(FIELD.DESTINATION, s, m.destination);
  if (m.sender !== undefined) field(FIELD.SENDER, s, m.sender);
  if (m.signature) field(FIELD.SIGNATURE, { code: "g" }, m.signature);
  w.setU32At(12, w.length - FIXED_HEADER_LEN);
  w.pad(8);
  w.bytes(body);
  if (w.length > MAX_MESSAGE_BYTES) throw new RangeError(`A D-Bus message of ${w.length} bytes is too long`);
  return w.result();
}

/** Reads a message's header; the body is left as bytes (`bodyBytes`) for `unmarshal`. */
export function parseHeader(bytes: Uint8Array): Omit<ReceivedMessage, "body"> & { bodyBytes: Uint8Array } {
  const h = DBusHeaderView.newChecked(bytes);
  if (bytes.length !== h.messageLength) throw malformed(`${bytes.length} bytes for a message of ${h.messageLength}`);
  const type = h.type;
  if (type < MessageType.METHOD_CALL || type > MessageType.SIGNAL) throw malformed(`message type ${type}`);
  if (h.serial === 0) throw malformed("serial 0");
  const m: Omit<ReceivedMessage, "body"> = {
    type: type as MessageType,
    flags: h.flags,
    serial: h.serial,
    signature: "",
  };
  const r = new Reader(bytes, h.littleEndian, FIXED_HEADER_LEN, FIXED_HEADER_LEN + h.fieldsLength);
  const expect = (code: number, sig: string, v: DBusVariant): DBusValue => {
    if (v.signature !== sig) throw malformed(`header field ${code} has type "${v.signature}", not "${sig}"`);
    return v.value as DBusValue;
  };
  while (r.pos < r.end) {
    r.align(8);
    const code = r.u8();
    const v = readValue(r, { code: "v" }, 0) as DBusVariant;
    switch (code) {
      case FIELD.PATH:
        m.path = expect(code, "o", v) as string;
        break;
      case FIELD.INTERFACE:
        m.interface = expect(code, "s", v) as string;
        break;
      case FIELD.MEMBER:
        m.member = expect(code, "s", v) as string;
        break;
      case FIELD.ERROR_NAME:
        m.errorName = expect(code, "s", v) as string;
        break;
      case FIELD.REPLY_SERIAL:
        m.replySerial = expect(code, "u", v) as number;
        break;
      case FIELD.DESTINATION:
        m.destination = expect(code, "s", v) as string;
        break;
      case FIELD.SENDER:
        m.sender = expect(code, "s", v) as string;
        break;
      case FIELD.SIGNATURE:
        m.signature = expect(code, "g", v) as string;
        break;
      default:
        // "Header fields with an unknown or unexpected field code must be ignored."
        break;
    }
  }
  if (r.pos !== r.end) throw malformed("the header fields overrun their length");
  new Reader(bytes, h.littleEndian, r.end, h.bodyOffset).align(8);
  const missing = REQUIRED[m.type].filter((k) => m[k] === undefined);
  if (missing.length) throw malformed(`a message of type ${m.type} without ${missing.join(", ")}`);
  return { ...m, bodyBytes: bytes.subarray(h.bodyOffset) };
}

/** Reads a whole message. Throws SyntaxError on malformed bytes. */
export function parseMessage(bytes: Uint8Array): ReceivedMessage {
  const { bodyBytes, ...m } = parseHeader(bytes);
  return { ...m, body: unmarshal(m.signature, bodyBytes, bytes[0] === LITTLE) };
}
