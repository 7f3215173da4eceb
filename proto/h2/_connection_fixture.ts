/**
 * Test support for the Connection tests (connection_test.ts, connection_malformed_test.ts,
 * connection_interop_test.ts): in-memory transports between two connections, a frame log, a recorder of what a
 * stream saw, and bounded waits.
 */
import assert from "node:assert/strict";
import { Connection, type ConnectionOptions, type Stream, type Transport } from "./connection.ts";
import { ErrorCode, FrameType, HEADER_LENGTH, parseHeader, PREFACE, readU32 } from "./frame.ts";
import type { HeaderList } from "./hpack.ts";
import { concat } from "../../base/bytes.ts";

export const te = new TextEncoder();
export const td = new TextDecoder();
export const KiB = 1024;
export const MiB = 1024 * KiB;

export const tick = () => new Promise<void>((r) => setTimeout(r, 0));

/** `p`, or a rejection naming `what` after `ms`: a bug fails the test instead of hanging it. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits a macrotask at a time until `done()`, failing after `ms`. */
export async function until(done: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await tick();
  }
}

/** `n` bytes of a pseudo-random sequence (a misplaced or repeated chunk shows as a mismatch). */
export function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** Asserts equal bytes, naming the first offset that differs (not a 5 MiB diff). */
export function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let i = 0;
  while (i < actual.length && actual[i] === expected[i]) i++;
  assert.equal(i, actual.length, `${what}: first difference at byte ${i}`);
}

/** A frame as a connection wrote it. */
interface Written {
  type: number;
  flags: number;
  streamId: number;
  payload: Uint8Array;
}

/** Splits the bytes a connection wrote into frames with parseHeader (after the client preface, when expected). */
export class FrameLog {
  readonly frames: Written[] = [];
  #rest: Uint8Array = new Uint8Array(0);
  #preface: boolean;

  constructor(expectPreface: boolean) {
    this.#preface = expectPreface;
  }

  add(bytes: Uint8Array): void {
    let b = this.#rest.length > 0 ? concat([this.#rest, bytes]) : bytes.slice();
    if (this.#preface) {
      if (b.length < PREFACE.length) {
        this.#rest = b;
        return;
      }
      assert.deepEqual(b.subarray(0, PREFACE.length), PREFACE, "a client starts with the preface");
      b = b.subarray(PREFACE.length);
      this.#preface = false;
    }
    let off = 0;
    while (b.length - off >= HEADER_LENGTH) {
      const h = parseHeader(b, off);
      if (b.length - off < HEADER_LENGTH + h.length) break;
      const payload = b.slice(off + HEADER_LENGTH, off + HEADER_LENGTH + h.length);
      this.frames.push({ type: h.type, flags: h.flags, streamId: h.streamId, payload });
      off += HEADER_LENGTH + h.length;
    }
    this.#rest = b.slice(off);
  }

  of(type: number, streamId?: number): Written[] {
    return this.frames.filter((f) => f.type === type && (streamId === undefined || f.streamId === streamId));
  }

  /** The RST_STREAM codes written for `streamId`. */
  resets(streamId: number): number[] {
    return this.of(FrameType.RST_STREAM, streamId).map((f) => readU32(f.payload, 0));
  }

  /** The last GOAWAY written, decoded. */
  goaway(): { lastStreamId: number; code: number; debug: string } | undefined {
    const f = this.of(FrameType.GOAWAY).at(-1);
    if (!f) return undefined;
    return {
      lastStreamId: readU32(f.payload, 0, true),
      code: readU32(f.payload, 4),
      debug: td.decode(f.payload.subarray(8)),
    };
  }
}

/**
 * Test double: one direction of an in-memory transport between two Connections. What `from` writes is handed to
 * `to.receive()` in order on a later macrotask; `buffered` counts bytes not delivered yet, and `from` hears
 * `transportDrained()` once they were. `close()` delivers what was written, then tells `to` its transport closed
 * (as a socket's EOF would). Every write is also parsed into `log`.
 */
export class PipeTransport implements Transport {
  from!: Connection;
  to!: Connection;
  readonly log: FrameLog;
  buffered = 0;
  closed = false;
  #pending: Uint8Array[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #eofSent = false;

  constructor(fromClient: boolean) {
    this.log = new FrameLog(fromClient);
  }

  /** Nothing left to deliver and no timer armed. */
  get idle(): boolean {
    return this.#timer === undefined;
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    this.log.add(bytes);
    this.#pending.push(bytes);
    this.buffered += bytes.length;
    this.#arm();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#arm();
  }

  #arm(): void {
    this.#timer ??= setTimeout(() => this.#deliver(), 0);
  }

  #deliver(): void {
    this.#timer = undefined;
    const batch = this.#pending.splice(0);
    for (const b of batch) {
      this.buffered -= b.length;
      this.to.receive(b);
    }
    if (this.closed) {
      if (!this.#eofSent) {
        this.#eofSent = true;
        this.to.transportClosed("closed by the peer (test double)");
      }
    } else if (batch.length > 0) this.from.transportDrained();
  }
}

interface Pair {
  client: Connection;
  server: Connection;
  /** Client to server. */
  c2s: PipeTransport;
  /** Server to client. */
  s2c: PipeTransport;
}

/** Runs `body` with a client and a server Connection wired by PipeTransports; ends both and their timers after. */
export async function withPair(
  clientOptions: ConnectionOptions,
  serverOptions: ConnectionOptions,
  body: (p: Pair) => Promise<void>,
): Promise<void> {
  const c2s = new PipeTransport(true);
  const s2c = new PipeTransport(false);
  const client = new Connection("client", c2s, clientOptions);
  const server = new Connection("server", s2c, serverOptions);
  c2s.from = client;
  c2s.to = server;
  s2c.from = server;
  s2c.to = client;
  try {
    await body({ client, server, c2s, s2c });
  } finally {
    client.destroy(ErrorCode.NO_ERROR, "test over");
    server.destroy(ErrorCode.NO_ERROR, "test over");
    await until(() => c2s.idle && s2c.idle, 5000, "the test double's deliveries");
  }
}

/** What one stream saw, in order. */
export class Recorder {
  readonly events: string[] = [];
  readonly chunks: Uint8Array[] = [];
  received = 0;
  headers: HeaderList | undefined;
  trailers: HeaderList | undefined;
  ended = false;
  closeCode: number | undefined;
  closeReason = "";
  readonly closed: Promise<number>;

  constructor(readonly stream: Stream) {
    let resolve!: (code: number) => void;
    this.closed = new Promise((r) => (resolve = r));
    stream.onResponse = (h) => {
      this.headers = h;
      this.events.push("response");
    };
    stream.onData = (c) => {
      this.chunks.push(c);
      this.received += c.length;
      if (this.events.at(-1) !== "data") this.events.push("data");
    };
    stream.onTrailers = (h) => {
      this.trailers = h;
      this.events.push("trailers");
    };
    stream.onEnd = () => {
      this.ended = true;
      this.events.push("end");
    };
    stream.onClose = (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason;
      this.events.push(`close ${code}`);
      resolve(code);
    };
  }

  body(): Uint8Array {
    return concat(this.chunks);
  }

  text(): string {
    return td.decode(this.body());
  }
}

export const request = (path: string, method = "POST"): HeaderList => [
  [":method", method],
  [":scheme", "http"],
  [":authority", "tp.test"],
  [":path", path],
];

/** A server handler: answers 200 and echoes the request body, then ends with a trailer counting the bytes. */
export function echo(s: Stream): void {
  let n = 0;
  s.respond([[":status", "200"], ["content-type", "application/octet-stream"]]);
  s.onData = (c) => {
    n += c.length;
    s.write(c);
  };
  s.onEnd = () => s.end([["x-echoed", String(n)]]);
}
