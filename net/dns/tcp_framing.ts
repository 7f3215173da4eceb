/**
 * DNS over TCP framing (RFC 1035 section 4.2.2, RFC 7766 section 8): every message is preceded by its length as a
 * 16-bit big-endian number. One connection may carry many queries, pipelined, in any segmentation.
 */
import { concat } from "../../base/bytes.ts";
import { TCP_LIMIT } from "./message.ts";

/** The message with its 2-byte length prefix. */
export function frameTcp(message: Uint8Array): Uint8Array {
  if (message.length > TCP_LIMIT) {
    throw new RangeError(`Cannot frame a DNS message of ${message.length} bytes: the limit is ${TCP_LIMIT}`);
  }
  const out = new Uint8Array(message.length + 2);
  out[0] = message.length >>> 8;
  out[1] = message.length & 0xff;
  out.set(message, 2);
  return out;
}

/**
 * Collects a byte stream into whole messages. `push()` returns the messages completed by a chunk. A zero length
 * prefix cannot start a DNS message (it is shorter than a header): the stream is then `broken` and the caller
 * should close the connection.
 */
export class TcpDeframer {
  #buf = new Uint8Array(0);
  broken = false;

  /** Bytes held for a message not yet complete. */
  get buffered(): number {
    return this.#buf.length;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    if (this.broken) return [];
    const buf = this.#buf.length ? concat([this.#buf, chunk]) : chunk;
    const out: Uint8Array[] = [];
    let o = 0;
    while (buf.length - o >= 2) {
      const len = (buf[o]! << 8) | buf[o + 1]!;
      if (len === 0) {
        this.broken = true;
        this.#buf = new Uint8Array(0);
        return out;
      }
      if (buf.length - o - 2 < len) break;
      out.push(buf.slice(o + 2, o + 2 + len));
      o += 2 + len;
    }
    this.#buf = buf.slice(o);
    return out;
  }
}
