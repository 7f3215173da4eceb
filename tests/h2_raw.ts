/**
 * A raw HTTP/2 peer for attack and conformance tests: frames from the project's own encoder (proto/h2/frame.ts,
 * hpack.ts) written to a plain socket exactly as given, and the frames that come back, parsed one by one. It checks
 * nothing itself, so it can send what no correct client would.
 */
import { concat } from "../base/bytes.ts";
import {
  ErrorCode,
  errorName,
  Flag,
  frame,
  FrameType,
  HEADER_LENGTH,
  parseHeader,
  PREFACE,
  readU32,
  settingsFrame,
} from "../proto/h2/frame.ts";
import { type HeaderList, HpackDecoder, HpackEncoder } from "../proto/h2/hpack.ts";

export interface RawFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Uint8Array;
}

/** A GOAWAY's fields. */
export interface Goaway {
  lastStreamId: number;
  code: number;
  debug: string;
}

export const GET_HEALTHZ: HeaderList = [
  [":method", "GET"],
  [":scheme", "http"],
  [":authority", "tp.test"],
  [":path", "/healthz"],
];

export class RawH2 {
  readonly encoder = new HpackEncoder();
  readonly decoder = new HpackDecoder();
  #buf: Uint8Array = new Uint8Array(0);
  #readBuf = new Uint8Array(64 * 1024);
  #eof = false;
  /** A write failed: the server closed (or reset) the connection. */
  writeFailed = false;

  private constructor(readonly conn: Deno.Conn) {}

  static async connect(port: number, hostname = "127.0.0.1"): Promise<RawH2> {
    return new RawH2(await Deno.connect({ hostname, port }));
  }

  /** The preface and an empty SETTINGS; then the server's SETTINGS is read and ACKed. */
  async handshake(settings: [number, number][] = []): Promise<void> {
    await this.send(concat([PREFACE, settingsFrame(settings)]));
    for (;;) {
      const f = await this.read(5000);
      if (!f) throw new Error("The server closed before its SETTINGS");
      if (f.type === FrameType.SETTINGS && !(f.flags & Flag.ACK)) break;
    }
    await this.send(frame(FrameType.SETTINGS, Flag.ACK, 0));
  }

  /** Writes `bytes`; false (and `writeFailed`) once the server closed or reset the connection. */
  async send(bytes: Uint8Array): Promise<boolean> {
    if (this.writeFailed) return false;
    try {
      let off = 0;
      while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
      return true;
    } catch {
      this.writeFailed = true;
      return false;
    }
  }

  headers(streamId: number, headers: HeaderList, endStream: boolean, block = this.encoder.encode(headers)): Uint8Array {
    return frame(FrameType.HEADERS, Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0), streamId, block);
  }

  /** The next frame, or null at EOF (or a reset), or after `ms` without one (then `timedOut`). */
  async read(ms: number): Promise<RawFrame | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (this.#buf.length >= HEADER_LENGTH) {
        const h = parseHeader(this.#buf);
        if (this.#buf.length >= HEADER_LENGTH + h.length) {
          const payload = this.#buf.slice(HEADER_LENGTH, HEADER_LENGTH + h.length);
          this.#buf = this.#buf.slice(HEADER_LENGTH + h.length);
          return { type: h.type, flags: h.flags, streamId: h.streamId, payload };
        }
      }
      if (this.#eof) return null;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      const n = await this.#readSome(left);
      if (n === "timeout") return null;
      if (n === null) {
        this.#eof = true;
        continue;
      }
      this.#buf = concat([this.#buf, this.#readBuf.subarray(0, n)]);
    }
  }

  get eof(): boolean {
    return this.#eof;
  }

  /** Reads until a GOAWAY (returned) or the end of the connection (null); other frames go to `seen`. */
  async untilGoaway(ms = 5000, seen: RawFrame[] = []): Promise<Goaway | null> {
    for (;;) {
      const f = await this.read(ms);
      if (!f) return null;
      if (f.type === FrameType.GOAWAY) return parseGoaway(f.payload);
      seen.push(f);
    }
  }

  /** Reads until the server's answer on `streamId` ends: its headers, body and how it ended. */
  async response(streamId: number, ms = 5000): Promise<Response1> {
    const r: Response1 = { headers: [], body: new Uint8Array(0), reset: undefined, headerBytes: 0 };
    for (;;) {
      const f = await this.read(ms);
      if (!f) throw new Error(`No answer on stream ${streamId} (${this.#eof ? "closed" : "timed out"})`);
      if (f.type === FrameType.GOAWAY) {
        const g = parseGoaway(f.payload);
        throw new Error(`GOAWAY ${errorName(g.code)} before stream ${streamId} ended: ${g.debug}`);
      }
      if (f.streamId !== streamId) continue;
      if (f.type === FrameType.HEADERS) {
        r.headerBytes += f.payload.length;
        r.headers.push(...this.decoder.decode(f.payload));
      } else if (f.type === FrameType.DATA) r.body = concat([r.body, f.payload]);
      else if (f.type === FrameType.RST_STREAM) {
        r.reset = readU32(f.payload, 0);
        return r;
      }
      if (f.flags & Flag.END_STREAM) return r;
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }

  async #readSome(ms: number): Promise<number | null | "timeout"> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)));
    const read = this.conn.read(this.#readBuf).catch(() => null);
    try {
      const r = await Promise.race([read, timeout]);
      if (r === "timeout") {
        // The read stays pending: close() ends it. The caller is expected to give up on this connection.
        this.#pending = read;
      }
      return r;
    } finally {
      clearTimeout(timer);
    }
  }

  #pending: Promise<unknown> | undefined;

  /** Closes and waits for a read left pending by a timeout. */
  async closed(): Promise<void> {
    this.close();
    await this.#pending;
  }
}

export interface Response1 {
  headers: HeaderList;
  body: Uint8Array;
  /** The RST_STREAM code, when the stream was reset. */
  reset: number | undefined;
  /** Octets of the response's header blocks, as sent. */
  headerBytes: number;
}

export function parseGoaway(p: Uint8Array): Goaway {
  return { lastStreamId: readU32(p, 0, true), code: readU32(p, 4), debug: new TextDecoder().decode(p.subarray(8)) };
}

export function header(headers: HeaderList, name: string): string | undefined {
  return headers.find(([n]) => n === name)?.[1];
}

/** GET /healthz on a fresh connection: the status, or a thrown error saying why not. */
export async function healthz(port: number): Promise<string | undefined> {
  const c = await RawH2.connect(port);
  try {
    await c.handshake();
    await c.send(c.headers(1, GET_HEALTHZ, true));
    return header((await c.response(1)).headers, ":status");
  } finally {
    await c.closed();
  }
}

export { ErrorCode };
