/**
 * The client's transport: ONE HTTP/2 connection (tp's own, proto/h2/) carrying every gRPC-web call as its own
 * HTTP/2 stream. The connection runs over any byte stream: a Deno TCP or TLS connection for a URL (http:// for h2c
 * with prior knowledge, https:// for TLS with ALPN "h2"), or a node Duplex from a factory, which is how a
 * Kubernetes port-forward stream plugs in.
 *
 * Why our own HTTP/2 and not node:http2 or fetch: scripts/bench measured node:http2 at ~20 KiB of memory per idle
 * stream and ~150 us of added request/response latency across both ends; fetch's per-chunk cost was several times
 * higher with 1400-byte writes, and fetch cannot run over a caller's duplex stream.
 */
import type { Duplex } from "node:stream";
import { isIP } from "node:net";
import tls from "node:tls";
import { Connection, type ConnectionError, type Stream } from "./h2/connection.ts";
import { ErrorCode } from "./h2/frame.ts";
import type { HeaderList } from "./h2/hpack.ts";
import { ConnTransport, DuplexTransport, type RunnableTransport } from "./h2/transport.ts";
import {
  CONTENT_TYPE,
  Deframer,
  encodeFrame,
  GrpcError,
  parseTrailers,
  Status,
  statusFromTrailers,
} from "./grpc_web.ts";

/** Makes the byte stream the HTTP/2 connection runs over: a node Duplex, or a transport of its own (a port-forward). */
export type DuplexFactory = () => Duplex | RunnableTransport;

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
 * HTTP/2 settings: each stream may hold 4 MiB the reader has not taken (its flow-control window, RFC 9113 section
 * 6.9), the connection 32 MiB in all (which bounds what a thousand slow streams can hold); frames of up to 128 KiB.
 * 4 MiB rather than 1: a single stream through a port-forward (two more hops, TLS each) has a longer round trip,
 * and scripts/bench_portforward measured 1 MiB as the limit of its throughput.
 */
export const STREAM_WINDOW = 4 << 20;
const CONNECTION_WINDOW = 32 << 20;
const MAX_FRAME_SIZE = 1 << 17;

export class Channel {
  /** The one HTTP/2 connection: its loss is the channel's (and the session's). */
  readonly connection: Connection;
  readonly maxMessageSize: number;
  readonly #base: HeaderList;
  /** Request header blocks by path, HPACK-encoded once (the encoder keeps no state, so a block is reusable). */
  readonly #blocks = new Map<string, Uint8Array>();
  #error: Error | undefined;
  #closing = false;
  readonly closed: Promise<void>;

  constructor(target: string | URL | DuplexFactory, options: ChannelOptions = {}) {
    this.maxMessageSize = options.maxMessageSize ?? 1 << 20;
    const h2 = { streamWindow: STREAM_WINDOW, connectionWindow: CONNECTION_WINDOW, maxFrameSize: MAX_FRAME_SIZE };
    let authority: string;
    let scheme = "http";
    if (typeof target === "function") {
      authority = options.authority ?? "tp-manager";
      const made = target();
      const t = "run" in made && "buffered" in made ? made as RunnableTransport : new DuplexTransport(made as Duplex);
      this.connection = new Connection("client", t, h2);
      void t.run(this.connection);
    } else {
      const url = new URL(target);
      if (url.protocol !== "http:" && url.protocol !== "https:") {
        throw new TypeError(`Manager URL must be http:// or https://, got "${url.href}"`);
      }
      authority = url.host;
      const hostname = url.hostname.replace(/^\[|\]$/g, "");
      const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
      if (url.protocol === "http:") {
        const t = new ConnTransport(Deno.connect({ hostname, port }));
        this.connection = new Connection("client", t, h2);
        void t.run(this.connection);
      } else if (options.rejectUnauthorized === false) {
        // Deno.connectTls always verifies; node:tls can be told not to (an explicit, insecure choice).
        scheme = "https";
        const socket = tls.connect({
          host: hostname,
          port,
          // SNI carries names only (RFC 6066 section 3): none for an IP address.
          ...(isIP(hostname) ? {} : { servername: hostname }),
          ALPNProtocols: ["h2"],
          rejectUnauthorized: false,
          ...(options.ca ? { ca: options.ca } : {}),
        });
        const t = new DuplexTransport(socket);
        this.connection = new Connection("client", t, h2);
        t.run(this.connection);
      } else {
        scheme = "https";
        const t = new ConnTransport(
          dialH2OverTls(url, {
            hostname,
            port,
            alpnProtocols: ["h2"],
            ...(options.ca ? { caCerts: [options.ca] } : {}),
          }),
        );
        this.connection = new Connection("client", t, h2);
        void t.run(this.connection);
      }
    }
    this.#base = [
      [":method", "POST"],
      [":scheme", scheme],
      [":authority", authority],
      ["content-type", CONTENT_TYPE],
      ["x-grpc-web", "1"],
      ["te", "trailers"],
      // No token, no header: "Bearer " alone ends in a space, which RFC 9113 section 8.2.1 makes malformed.
      ...(options.token ? [["authorization", `Bearer ${options.token}`] as [string, string]] : []),
    ];
    this.closed = this.connection.closed.then((e: ConnectionError) => {
      if (!this.#closing) this.#error ??= e;
    });
  }

  /** The connection's error, once it failed. */
  get error(): Error | undefined {
    return this.#error;
  }

  /** HTTP/2 connections open: always one (kept for `tp status` and tests). */
  get connections(): number {
    return 1;
  }

  /** Starts a call: a new HTTP/2 stream with the gRPC-web headers. */
  open(path: string): Stream {
    if (!this.connection.usable) {
      const why = this.connection.error ?? this.#error;
      throw new GrpcError(Status.UNAVAILABLE, `Connection to the manager is closed${why ? `: ${why.message}` : ""}`);
    }
    let block = this.#blocks.get(path);
    if (!block) {
      block = this.connection.encodeHeaders([this.#base[0]!, [":path", path], ...this.#base.slice(1)]);
      this.#blocks.set(path, block);
    }
    return this.connection.request(block);
  }

  /** A unary call: one message out, one message back. Failures are GrpcErrors. */
  async unary(path: string, request: Uint8Array, signal?: AbortSignal): Promise<Uint8Array> {
    const call = new Call(this.open(path), this.maxMessageSize);
    const onAbort = () => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      call.stream.write(encodeFrame(request));
      call.stream.end();
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

  /** Closes the connection after its calls end; `destroy` ends them too. */
  async close(): Promise<void> {
    this.#closing = true;
    this.connection.close();
    await this.closed;
  }

  destroy(): Promise<void> {
    this.#closing = true;
    this.connection.destroy(ErrorCode.CANCEL, "closed by the client");
    return this.closed;
  }
}

/**
 * A TLS connection on which the server agreed to HTTP/2 (ALPN "h2", RFC 9113 section 3.2); a server that did not
 * fails the dial with a message saying so, instead of a protocol error on the first frame.
 */
async function dialH2OverTls(url: URL, o: Deno.ConnectTlsOptions): Promise<Deno.TlsConn> {
  const conn = await Deno.connectTls(o);
  const notH2 = (why: string) =>
    new Error(`${url.origin} does not speak HTTP/2 over TLS (${why}): is it a tp manager?`);
  try {
    let alpn: string | null;
    try {
      alpn = (await conn.handshake()).alpnProtocol;
    } catch (e) {
      // A server that has no protocol in common ends the handshake with this alert (RFC 7301 section 3.2).
      if (/NoApplicationProtocol|no_application_protocol/i.test(String(e))) throw notH2("it refused ALPN h2");
      throw e;
    }
    if (alpn !== "h2") throw notH2(`it chose ALPN ${alpn ?? "none"}`);
  } catch (e) {
    conn.close();
    throw e;
  }
  return conn;
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

  constructor(readonly stream: Stream, maxMessageSize: number) {
    this.#deframer = new Deframer(maxMessageSize);
    this.status = new Promise((r) => (this.#settle = r));
    let haveStatus: { code: Status; message: string } | undefined;
    stream.onResponse = (headers) => {
      const get = (n: string) => headers.find(([k]) => k === n)?.[1];
      const http = Number(get(":status"));
      if (get("grpc-status") !== undefined) haveStatus = statusFromTrailers(get);
      else if (http !== 200) haveStatus = { code: httpToStatus(http), message: `HTTP ${http}` };
    };
    stream.onTrailers = (headers) => {
      // gRPC over HTTP/2 trailers (a non-web server); gRPC-web puts them in the body.
      const get = (n: string) => headers.find(([k]) => k === n)?.[1];
      if (get("grpc-status") !== undefined) haveStatus = statusFromTrailers(get);
    };
    stream.onData = (chunk: Uint8Array) => {
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
        stream.reset(ErrorCode.CANCEL);
        return;
      }
      this.#wake();
    };
    stream.onEnd = () =>
      this.#finish(haveStatus ?? { code: Status.INTERNAL, message: "Response ended without grpc-status" });
    stream.onClose = (code, reason) => {
      if (code === 0) return; // onEnd settled it
      const message = code === -1 || code === ErrorCode.INTERNAL_ERROR && !reason.startsWith("stream")
        ? reason
        : `Stream closed (HTTP/2 code ${code}): ${reason}`;
      this.#finish(haveStatus ?? { code: Status.UNAVAILABLE, message });
    };
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
    this.stream.reset(ErrorCode.CANCEL);
    this.#finish({ code: Status.CANCELLED, message: "Cancelled by the client" });
  }

  #finish(s: { code: Status; message: string }): void {
    if (this.#done) return;
    this.#done = true;
    this.#settle(s);
    this.onEnd?.(s);
    this.#wake();
    // The response is over: a request side still open is abandoned (a server that answered early). A request that
    // was ended already closes with the response, without a reset (every unary call would send one otherwise).
    if (!this.stream.sendEnded) this.stream.reset(ErrorCode.CANCEL);
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }
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
