/**
 * The client's transport: one HTTP/2 connection (node:http2 under Deno) carrying every gRPC-web call as its own
 * HTTP/2 stream (and a further connection per ~190 concurrent streams: the manager's limit per connection). The connection runs over any duplex byte stream: `http2.connect` takes a `createConnection` that
 * may return any node Duplex, which is how a Kubernetes port-forward stream plugs in; a URL (http:// for h2c with
 * prior knowledge, https:// for TLS with ALPN "h2") is a convenience over the same code.
 *
 * Why node:http2 and not fetch: scripts/bench_tunnel.ts measures both; fetch's per-chunk cost made it several times
 * slower with 1400-byte writes, and fetch cannot run over a caller's duplex stream.
 */
import http2 from "node:http2";
import type { Duplex } from "node:stream";
import {
  CONTENT_TYPE,
  Deframer,
  encodeFrame,
  GrpcError,
  parseTrailers,
  Status,
  statusFromTrailers,
} from "./grpc_web.ts";

/**
 * Makes a byte stream an HTTP/2 connection runs over: called for the first connection and for each further one (when
 * the streams outgrow the manager's limit per connection), so each call must return a new stream.
 */
export type DuplexFactory = () => Duplex;

export interface ChannelOptions {
  /** Sent as "authorization: Bearer <token>" on every call. */
  token?: string;
  /** The :authority for a duplex factory (default "tp-manager"). */
  authority?: string;
  /** PEM CA certificates to trust for https:// (default: the system's). */
  ca?: string;
  /** Whether https:// checks the server's certificate (default true). */
  rejectUnauthorized?: boolean;
  /** Largest message accepted from the manager (default 1 MiB). */
  maxMessageSize?: number;
}

/**
 * HTTP/2 settings: each stream may hold 1 MiB the reader has not taken (its flow-control window, RFC 9113 section
 * 6.9), the connection 32 MiB in all; frames of up to 64 KiB + header carry one tunnel frame each.
 */
export const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 32 << 20;
const MAX_FRAME_SIZE = 1 << 17;
/** Streams left free on a connection before the next one is opened (calls like keepalives need room too). */
const STREAM_MARGIN = 8;

export class Channel {
  /** The first connection: its loss is the channel's (and the session's). */
  readonly session: http2.ClientHttp2Session;
  readonly maxMessageSize: number;
  readonly #headers: Record<string, string>;
  readonly #connect: () => http2.ClientHttp2Session;
  /** Further connections, opened when the ones there are carry as many streams as the manager allows. */
  readonly #extra: http2.ClientHttp2Session[] = [];
  readonly #active = new Map<http2.ClientHttp2Session, number>();
  #error: Error | undefined;
  readonly closed: Promise<void>;

  constructor(target: string | URL | DuplexFactory, options: ChannelOptions = {}) {
    this.maxMessageSize = options.maxMessageSize ?? 1 << 20;
    const settings = { initialWindowSize: STREAM_WINDOW, maxFrameSize: MAX_FRAME_SIZE, enablePush: false };
    if (typeof target === "function") {
      this.#connect = () =>
        http2.connect(`http://${options.authority ?? "tp-manager"}`, {
          settings,
          createConnection: () => target() as unknown as import("node:net").Socket,
        });
    } else {
      const url = new URL(target);
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        throw new TypeError(`Manager URL must be http:// or https://, got "${url.href}"`);
      }
      this.#connect = () =>
        http2.connect(url.origin, {
          settings,
          ...(options.ca ? { ca: options.ca } : {}),
          ...(options.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
        });
    }
    this.session = this.#open();
    this.session.on("error", (e: Error) => (this.#error ??= e));
    this.closed = new Promise((resolve) =>
      this.session.once("close", () => {
        // The first connection carries the session: when it goes, the others go with it.
        for (const s of this.#extra) s.destroy();
        resolve();
      })
    );
    this.#headers = {
      "content-type": CONTENT_TYPE,
      "x-grpc-web": "1",
      ...(options.token !== undefined ? { authorization: `Bearer ${options.token}` } : {}),
    };
  }

  #open(): http2.ClientHttp2Session {
    const s = this.#connect();
    s.on("connect", () => s.setLocalWindowSize(CONNECTION_WINDOW));
    this.#active.set(s, 0);
    return s;
  }

  /** The connection's error, once it failed. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** HTTP/2 connections open now (more than one once the streams outgrow what the manager allows on one). */
  get connections(): number {
    return 1 + this.#extra.length;
  }

  /**
   * A connection with room for one more stream. The manager's HTTP/2 server allows a limited number of concurrent
   * streams per connection (Deno.serve: 200, not configurable); past that a request would wait for a free stream,
   * so a further connection to the same target carries the rest.
   */
  #pick(): http2.ClientHttp2Session {
    for (const s of [this.session, ...this.#extra]) {
      if (s.closed || s.destroyed) continue;
      // Before the peer's SETTINGS arrive, assume the protocol's recommended minimum (RFC 9113 section 6.5.2).
      const limit = Math.min(s.remoteSettings?.maxConcurrentStreams ?? 100, 1_000_000);
      if (this.#active.get(s)! < limit - STREAM_MARGIN) return s;
    }
    const s = this.#open();
    s.on("error", () => {}); // its streams fail on their own; the channel's fate is the first connection's
    s.once("close", () => {
      this.#extra.splice(this.#extra.indexOf(s), 1);
      this.#active.delete(s);
    });
    this.#extra.push(s);
    return s;
  }

  /** Starts a call: a new HTTP/2 stream with the gRPC-web headers. */
  open(path: string): http2.ClientHttp2Stream {
    if (this.session.closed || this.session.destroyed) {
      throw new GrpcError(
        Status.UNAVAILABLE,
        `Connection to the manager is closed${this.#error ? `: ${this.#error.message}` : ""}`,
      );
    }
    const s = this.#pick();
    const stream = s.request({ ":method": "POST", ":path": path, ...this.#headers }, { endStream: false });
    this.#active.set(s, this.#active.get(s)! + 1);
    stream.once("close", () => {
      const n = this.#active.get(s);
      if (n !== undefined) this.#active.set(s, n - 1);
    });
    return stream;
  }

  /** A unary call: one message out, one message back. Failures are GrpcErrors. */
  async unary(path: string, request: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    const call = new Call(this.open(path), this.maxMessageSize);
    const onAbort = () => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      call.stream.end(encodeFrame(request));
      const msg = await call.nextMessage();
      if (msg === null) {
        const s = await call.status;
        throw new GrpcError(
          s.code === Status.OK ? Status.INTERNAL : s.code,
          s.code === Status.OK ? "No response message" : s.message,
        );
      }
      const s = await call.status;
      if (s.code !== Status.OK) throw new GrpcError(s.code, s.message);
      return msg;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      call.cancel();
    }
  }

  /** Closes the connections after their calls end; `destroy` ends them too. */
  async close(): Promise<void> {
    for (const s of this.#extra) if (!s.closed) s.close();
    if (!this.session.closed) this.session.close();
    await this.closed;
  }

  destroy(): Promise<void> {
    for (const s of this.#extra) s.destroy();
    this.session.destroy();
    return this.closed;
  }
}

/**
 * One call's response side: deframes the body, hands out messages, and settles `status` from the trailers (or
 * trailers-only headers, or the HTTP status, or a stream error).
 */
export class Call {
  readonly #deframer: Deframer;
  readonly #messages: Uint8Array[] = [];
  #queuedBytes = 0;
  #waiter: (() => void) | undefined;
  #done = false;
  #settle!: (s: { code: Status; message: string }) => void;
  readonly status: Promise<{ code: Status; message: string }>;
  /** When set, called for each message instead of queueing it. */
  onMessage: ((msg: Uint8Array) => void) | undefined;
  /** Called once when the status is known. */
  onEnd: ((s: { code: Status; message: string }) => void) | undefined;

  constructor(readonly stream: http2.ClientHttp2Stream, maxMessageSize: number) {
    this.#deframer = new Deframer(maxMessageSize);
    this.status = new Promise((r) => (this.#settle = r));
    let haveStatus: { code: Status; message: string } | undefined;
    stream.on("response", (headers) => {
      const http = Number(headers[":status"]);
      if (headers["grpc-status"] !== undefined) {
        haveStatus = statusFromTrailers((n) => headerString(headers[n]));
      } else if (http !== 200) {
        haveStatus = { code: httpToStatus(http), message: `HTTP ${http}` };
      }
    });
    stream.on("data", (chunk: Uint8Array) => {
      if (this.#done) return;
      this.#deframer.push(chunk);
      try {
        for (let f = this.#deframer.next(); f; f = this.#deframer.next()) {
          if (f.trailers) {
            const t = parseTrailers(f.message);
            haveStatus = statusFromTrailers((n) => t.get(n));
            continue;
          }
          if (this.onMessage) this.onMessage(f.message);
          else {
            this.#messages.push(f.message);
            this.#queuedBytes += f.message.length;
          }
        }
      } catch (e) {
        this.#finish(
          e instanceof GrpcError ? { code: e.code, message: e.details } : { code: Status.INTERNAL, message: String(e) },
        );
        stream.close(http2.constants.NGHTTP2_CANCEL);
        return;
      }
      this.#wake();
    });
    stream.on(
      "end",
      () => this.#finish(haveStatus ?? { code: Status.INTERNAL, message: "Response ended without grpc-status" }),
    );
    stream.on("error", (e: Error) => this.#finish({ code: Status.UNAVAILABLE, message: e.message }));
    stream.on("close", () => {
      const code = stream.rstCode;
      this.#finish(haveStatus ?? { code: Status.UNAVAILABLE, message: `Stream closed (HTTP/2 code ${code})` });
    });
  }

  /** Bytes of messages received and not yet taken. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** The next message, or null once the response ended. */
  async nextMessage(): Promise<Uint8Array | null> {
    for (;;) {
      const m = this.#messages.shift();
      if (m) {
        this.#queuedBytes -= m.length;
        return m;
      }
      if (this.#done) return null;
      await new Promise<void>((r) => (this.#waiter = r));
    }
  }

  /** Abandons the call (RST_STREAM CANCEL) unless it already ended. */
  cancel(): void {
    if (!this.stream.closed && !this.stream.destroyed) this.stream.close(http2.constants.NGHTTP2_CANCEL);
    this.#finish({ code: Status.CANCELLED, message: "Cancelled by the client" });
  }

  #finish(s: { code: Status; message: string }): void {
    if (this.#done) return;
    this.#done = true;
    this.#settle(s);
    this.onEnd?.(s);
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }
}

function headerString(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** HTTP status to gRPC status, as gRPC's http-grpc-status-mapping.md lists. */
function httpToStatus(http: number): Status {
  switch (http) {
    case 400:
      return Status.INTERNAL;
    case 401:
      return Status.UNAUTHENTICATED;
    case 403:
      return Status.PERMISSION_DENIED;
    case 404:
      return Status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Status.UNAVAILABLE;
    default:
      return Status.UNKNOWN;
  }
}
