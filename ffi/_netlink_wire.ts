/**
 * Netlink message encoding and decoding (include/uapi/linux/netlink.h, rtnetlink.h): a builder for requests and a
 * parser for replies. No I/O here; `netlink.ts` sends and receives.
 */

// include/uapi/linux/netlink.h
export const NLMSG_HDRLEN = 16;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_CAPPED = 0x100; // in an NLMSG_ERROR: the original message was cut to its header
export const NLM_F_ACK_TLVS = 0x200; // in an NLMSG_ERROR: extended-ack attributes follow
export const NLMSGERR_ATTR_MSG = 1;
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

const align4 = (n: number) => (n + 3) & ~3;

/** Builds one netlink request: header, fixed-size family header, then attributes (nested ones too). */
export class MessageBuilder {
  #buf = new Uint8Array(256);
  #view = new DataView(this.#buf.buffer);
  #len = NLMSG_HDRLEN;
  readonly #nests: number[] = [];

  constructor(type: number, flags: number) {
    this.#view.setUint16(4, type, true);
    this.#view.setUint16(6, flags, true);
  }

  #reserve(n: number): number {
    const at = this.#len;
    const need = at + align4(n);
    if (need > this.#buf.length) {
      const bigger = new Uint8Array(Math.max(need, this.#buf.length * 2));
      bigger.set(this.#buf);
      this.#buf = bigger;
      this.#view = new DataView(bigger.buffer);
    }
    this.#len = need;
    return at;
  }

  /** Appends the family header (ifinfomsg, ifaddrmsg, rtmsg, fib_rule_hdr), already encoded. */
  fixed(bytes: Uint8Array): this {
    this.#buf.set(bytes, this.#reserve(bytes.length));
    return this;
  }

  attr(type: number, payload: Uint8Array): this {
    const at = this.#reserve(4 + payload.length);
    this.#view.setUint16(at, 4 + payload.length, true);
    this.#view.setUint16(at + 2, type, true);
    this.#buf.set(payload, at + 4);
    return this;
  }

  u8(type: number, value: number): this {
    return this.attr(type, Uint8Array.of(value));
  }

  u32(type: number, value: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value, true);
    return this.attr(type, b);
  }

  string(type: number, value: string): this {
    const s = new TextEncoder().encode(value);
    const b = new Uint8Array(s.length + 1);
    b.set(s);
    return this.attr(type, b);
  }

  /** Opens a nested attribute; close it with `end()`. */
  begin(type: number): this {
    const at = this.#reserve(4);
    this.#view.setUint16(at + 2, type | NLA_F_NESTED, true);
    this.#nests.push(at);
    return this;
  }

  end(): this {
    const at = this.#nests.pop();
    if (at === undefined) throw new TypeError("MessageBuilder.end() without begin()");
    this.#view.setUint16(at, this.#len - at, true);
    return this;
  }

  /** The finished message with its length and sequence number filled in. */
  finish(seq: number): Uint8Array<ArrayBuffer> {
    if (this.#nests.length > 0) throw new TypeError("MessageBuilder.finish() with an open nested attribute");
    this.#view.setUint32(0, this.#len, true);
    this.#view.setUint32(8, seq, true);
    return this.#buf.slice(0, this.#len);
  }
}

/** One message of a reply. `body` starts after the netlink header. */
export interface Message {
  type: number;
  flags: number;
  seq: number;
  body: Uint8Array;
}

/** Splits a datagram into messages; stops at a malformed length (the kernel never sends one). */
export function* messages(data: Uint8Array): Generator<Message> {
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  for (let off = 0; off + NLMSG_HDRLEN <= data.length;) {
    const len = view.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > data.length) return;
    yield {
      type: view.getUint16(off + 4, true),
      flags: view.getUint16(off + 6, true),
      seq: view.getUint32(off + 8, true),
      body: data.subarray(off + NLMSG_HDRLEN, off + len),
    };
    off += align4(len);
  }
}

/** The attributes in `data` by type (the last one wins for a repeated type; nested flag removed). */
export function attributes(data: Uint8Array): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  for (let off = 0; off + 4 <= data.length;) {
    const len = view.getUint16(off, true);
    if (len < 4 || off + len > data.length) break;
    out.set(view.getUint16(off + 2, true) & NLA_TYPE_MASK, data.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

export const readU32 = (b: Uint8Array | undefined): number | undefined =>
  b && b.length >= 4 ? new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true) : undefined;

export const readString = (b: Uint8Array | undefined): string | undefined => {
  if (!b) return undefined;
  const nul = b.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? b : b.subarray(0, nul));
};

/** The error of an NLMSG_ERROR (0 for an ACK) and the kernel's extended-ack text, if any. */
export function parseError(msg: Message): { errno: number; kernelMessage: string | undefined } {
  const view = new DataView(msg.body.buffer, msg.body.byteOffset, msg.body.length);
  const error = msg.body.length >= 4 ? view.getInt32(0, true) : -5;
  let kernelMessage: string | undefined;
  if (msg.flags & NLM_F_ACK_TLVS && msg.body.length >= 4 + NLMSG_HDRLEN) {
    // With NLM_F_CAPPED only the original header follows the error; otherwise the whole original message.
    const origLen = msg.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : view.getUint32(4, true);
    kernelMessage = readString(attributes(msg.body.subarray(4 + align4(origLen))).get(NLMSGERR_ATTR_MSG));
  }
  return { errno: error === 0 ? 0 : -error, kernelMessage };
}
