/**
 * gRPC-web framing, shared by the client and the manager.
 *
 * Facts from the gRPC-web protocol (github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md) and gRPC over HTTP/2
 * (doc/PROTOCOL-HTTP2.md):
 * - every message is a Length-Prefixed-Message: 1 flag byte, a 4-byte big-endian length, the message;
 * - flag bit 0x80 marks the trailers frame, the last in a response body, whose content is HTTP/1-style header lines
 *   ("grpc-status: 0\r\ngrpc-message: ...\r\n"); flag bit 0x01 marks a compressed message (we never compress);
 * - an error before any message may be a "trailers-only" response: grpc-status in the HTTP headers, empty body;
 * - grpc-message is percent-encoded.
 */

export const CONTENT_TYPE = "application/grpc-web+proto";
/** The frame header: one flag byte and a 4-byte big-endian length ("Length-Prefixed-Message"). */
export const FRAME_HEADER_LEN = 5;

/** gRPC status codes (doc/statuscodes.md). */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type Status = (typeof Status)[keyof typeof Status];

/** The name of a status code, for logs: statusName(5) === "NOT_FOUND". */
export function statusName(code: number): string {
  return STATUS_NAMES[code] ?? `STATUS_${code}`;
}
const STATUS_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Status).map(([k, v]) => [v, k]));

/** A call ended with a non-OK gRPC status. Callers catch it to read `code`. */
export class GrpcError extends Error {
  constructor(readonly code: Status, message: string) {
    super(`${statusName(code)}: ${message}`);
    this.name = "GrpcError";
  }
  /** The message without the status name, as sent in grpc-message. */
  get details(): string {
    return this.message.slice(statusName(this.code).length + 2);
  }
}

const FLAG_TRAILERS = 0x80;
const FLAG_COMPRESSED = 0x01;

/** Wraps message bytes into one frame. */
export function encodeFrame(message: Uint8Array, flags = 0): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_LEN + message.length);
  out[0] = flags;
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, FRAME_HEADER_LEN);
  return out;
}

/** Percent-encodes a grpc-message value: bytes outside printable ASCII, and '%' itself (PROTOCOL-HTTP2.md). */
export function encodeGrpcMessage(text: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(text)) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25
      ? String.fromCharCode(b)
      : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export function decodeGrpcMessage(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The trailers frame that ends a response body. */
export function encodeTrailers(code: Status, message = ""): Uint8Array {
  let text = `grpc-status: ${code}\r\n`;
  if (message) text += `grpc-message: ${encodeGrpcMessage(message)}\r\n`;
  return encodeFrame(new TextEncoder().encode(text), FLAG_TRAILERS);
}

/** Reads a trailers frame's header lines into lower-case names. */
export function parseTrailers(bytes: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of new TextDecoder().decode(bytes).split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0) out.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  return out;
}

/** The status in trailers or trailers-only headers; a missing or unparsable grpc-status reads as UNKNOWN. */
export function statusFromTrailers(get: (name: string) => string | undefined): { code: Status; message: string } {
  const raw = get("grpc-status");
  const n = raw === undefined ? NaN : Number(raw);
  const code = (Number.isInteger(n) && n >= 0 && n <= 16 ? n : Status.UNKNOWN) as Status;
  const message = decodeGrpcMessage(get("grpc-message") ?? (raw === undefined ? "no grpc-status" : ""));
  return { code, message };
}

export type Frame = { trailers: false; message: Uint8Array } | { trailers: true; message: Uint8Array };

/**
 * Splits a byte stream into frames. Bytes are buffered only up to one frame (bounded by `maxMessageSize`); a frame
 * whose declared length is over it, or one marked compressed, throws a GrpcError before its body is buffered.
 */
export class Deframer {
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #need = -1; // length of the current frame's message, once its header is read
  #flags = 0;

  constructor(readonly maxMessageSize: number) {}

  /** Bytes held for a frame not yet complete. */
  get buffered(): number {
    return this.#buffered;
  }

  /** True when no partial frame is held: the stream may end here. */
  get atBoundary(): boolean {
    return this.#buffered === 0 && this.#need < 0;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /** The next complete frame, or undefined when more bytes are needed. */
  next(): Frame | undefined {
    if (this.#need < 0) {
      if (this.#buffered < FRAME_HEADER_LEN) return undefined;
      const h = this.#take(FRAME_HEADER_LEN);
      this.#flags = h[0]!;
      this.#need = new DataView(h.buffer, h.byteOffset, h.byteLength).getUint32(1);
      if (this.#flags & FLAG_COMPRESSED) {
        throw new GrpcError(Status.UNIMPLEMENTED, "Compressed gRPC-web frames are not supported");
      }
      if ((this.#flags & ~FLAG_TRAILERS) !== 0) {
        throw new GrpcError(Status.INTERNAL, `Bad gRPC-web frame flags 0x${this.#flags.toString(16)}`);
      }
      if (this.#need > this.maxMessageSize) {
        throw new GrpcError(
          Status.RESOURCE_EXHAUSTED,
          `Message of ${this.#need} bytes is over the limit of ${this.maxMessageSize}`,
        );
      }
    }
    if (this.#buffered < this.#need) return undefined;
    const message = this.#take(this.#need);
    this.#need = -1;
    return { trailers: (this.#flags & FLAG_TRAILERS) !== 0, message };
  }

  /** Removes n buffered bytes, as a subarray when they sit in one chunk. */
  #take(n: number): Uint8Array {
    this.#buffered -= n;
    const first = this.#chunks[0];
    if (n === 0) return new Uint8Array(0);
    if (first && first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.length, n - o);
      out.set(c.subarray(0, k), o);
      o += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    return out;
  }
}
