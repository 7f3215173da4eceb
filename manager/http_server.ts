/**
 * The manager's HTTP listener on node:http2 and node:http, one port for every kind of client:
 * - plain TCP: a connection that opens with the HTTP/2 client preface (RFC 9113 section 3.4, "prior knowledge") goes
 *   to the HTTP/2 server; anything else to the HTTP/1.1 server (curl /metrics, gRPC-web over HTTP/1.1);
 * - TLS: ALPN picks "h2" or "http/1.1" (RFC 7301), the same two servers behind it.
 *
 * Why not Deno.serve: hyper underneath advertises SETTINGS_MAX_CONCURRENT_STREAMS 200 and Deno offers no way to
 * change it, and tp carries every workstation connection as one stream of one HTTP/2 connection; here the limit is
 * the caller's `maxConcurrentStreams`.
 *
 * Requests reach `handler` as exchanges (see `Exchange`): the request head, the body as a node Readable, and a
 * response sink; `serve.ts`-style adapters are not needed.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import type { Readable } from "node:stream";

/** The HTTP/2 client connection preface, RFC 9113 section 3.4. */
const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** A connection that sends no complete request head within this time is closed. */
const HEAD_TIMEOUT_MS = 30_000;
/**
 * HTTP/2 flow control (RFC 9113 section 6.9): each request stream may hold 1 MiB the manager has not read, the
 * connection 32 MiB in all; the same as tp's client (proto/channel.ts), so a single tunnel stream is not limited by
 * the default 64 KiB window.
 */
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 32 << 20;
const MAX_FRAME_SIZE = 1 << 17;

/** One request, over HTTP/1.1 or HTTP/2. */
export interface Exchange {
  readonly httpVersion: "1.1" | "2";
  readonly method: string;
  /** The request target's path and query, as sent. */
  readonly path: string;
  header(name: string): string | undefined;
  /** The request body; ends when the client ends it, errors or closes when the client resets the stream. */
  readonly body: Readable;
  /** Sends the response head; `end` sends it with no body. Once only. */
  respond(status: number, headers: Record<string, string>, end?: boolean): void;
  /** Writes body bytes; false when the caller should wait for `drained()`. */
  write(chunk: Uint8Array): boolean;
  /** Resolves when the response can take more bytes, or the exchange closed. */
  drained(): Promise<void>;
  /** Ends the response body. */
  end(chunk?: Uint8Array): void;
  /** Bytes written and not yet sent. */
  readonly writableLength: number;
  /** True once the response was fully sent or the client went away. */
  readonly closed: boolean;
  /** Called once when the exchange ends either way; `aborted` when the client went away before the response ended. */
  onClose(f: (aborted: boolean) => void): void;
}

export type ExchangeHandler = (x: Exchange) => void;

export interface HttpServerOptions {
  hostname: string;
  port: number;
  tls?: { cert: string; key: string } | undefined;
  /** SETTINGS_MAX_CONCURRENT_STREAMS for each HTTP/2 connection. */
  maxConcurrentStreams: number;
  /** A handler threw: the caller logs it. */
  onError(e: unknown): void;
}

export class ManagerHttpServer {
  /** Resolves when the listener has stopped and every connection closed. */
  readonly finished: Promise<void>;
  readonly #listener: net.Server;
  readonly #h2: http2.Http2Server;
  readonly #h1: http.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  /** HTTP/1.1 sockets with a request in flight, so shutdown closes only idle ones at once. */
  readonly #busy = new Map<net.Socket, number>();
  #closing = false;
  #resolveFinished!: () => void;

  constructor(readonly options: HttpServerOptions, readonly handler: ExchangeHandler) {
    this.finished = new Promise((r) => (this.#resolveFinished = r));
    this.#h2 = http2.createServer({
      settings: {
        maxConcurrentStreams: options.maxConcurrentStreams,
        initialWindowSize: STREAM_WINDOW,
        maxFrameSize: MAX_FRAME_SIZE,
        enablePush: false,
      },
    });
    this.#h2.on("session", (s: http2.ServerHttp2Session) => {
      this.#sessions.add(s);
      s.once("close", () => this.#sessions.delete(s));
      s.on("error", () => {}); // a broken connection; its streams see it on their own
      s.once("connect", () => s.setLocalWindowSize(CONNECTION_WINDOW));
      if (this.#closing) s.close();
    });
    this.#h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      stream.on("error", () => {}); // RST_STREAM from the client, or the connection died: 'close' follows
      this.#dispatch(() => h2Exchange(stream, headers));
    });
    this.#h1 = http.createServer((req, res) => {
      const sock = req.socket;
      this.#busy.set(sock, (this.#busy.get(sock) ?? 0) + 1);
      res.once("close", () => {
        const n = (this.#busy.get(sock) ?? 1) - 1;
        if (n > 0) this.#busy.set(sock, n);
        else {
          this.#busy.delete(sock);
          if (this.#closing) sock.destroy();
        }
      });
      if (this.#closing) res.shouldKeepAlive = false;
      this.#dispatch(() => h1Exchange(req, res));
    });
    // Deno's node:http ends a keep-alive connection after each response when its server is not listening (it
    // treats that as "closing"; denoland/deno#35609), and this one never listens: connections are handed to it.
    Object.defineProperty(this.#h1, "listening", { get: () => !this.#closing });
    this.#h1.on("clientError", (_e: Error, sock: net.Socket) => {
      if (sock.writable) sock.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
      else sock.destroy();
    });
    const accept = (sock: net.Socket) => this.#accept(sock);
    this.#listener = options.tls
      ? tls.createServer({ cert: options.tls.cert, key: options.tls.key, ALPNProtocols: ["h2", "http/1.1"] }, accept)
      : net.createServer(accept);
    this.#listener.on("error", (e: Error) => options.onError(e));
  }

  /** Starts listening; resolves with the bound address. */
  listen(): Promise<{ hostname: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.#listener.once("error", reject);
      this.#listener.listen(this.options.port, this.options.hostname, () => {
        this.#listener.off("error", reject);
        const a = this.#listener.address() as net.AddressInfo;
        resolve({ hostname: a.address, port: a.port });
      });
    });
  }

  /**
   * Stops accepting connections, sends GOAWAY on every HTTP/2 connection and closes idle HTTP/1.1 ones; resolves
   * when every connection has closed, or destroys what is left after `graceMs`.
   */
  async shutdown(graceMs = 10_000): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      this.#listener.close();
      for (const s of this.#sessions) s.close();
      for (const sock of this.#sockets) if (!this.#busy.has(sock) && !this.#isH2(sock)) sock.destroy();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((r) => (timer = setTimeout(r, graceMs)));
    await Promise.race([this.#allClosed(), deadline]);
    clearTimeout(timer);
    for (const sock of this.#sockets) sock.destroy();
    await this.#allClosed();
    this.#resolveFinished();
  }

  #isH2(sock: net.Socket): boolean {
    return (sock as net.Socket & { tpH2?: boolean }).tpH2 === true;
  }

  async #allClosed(): Promise<void> {
    for (let i = 0; this.#sockets.size > 0 && i < 10_000; i++) {
      await Promise.all(
        [...this.#sockets].map((s) => new Promise<void>((r) => s.destroyed ? r() : s.once("close", r))),
      );
    }
  }

  #dispatch(make: () => Exchange): void {
    let x: Exchange | undefined;
    try {
      x = make();
      this.handler(x);
    } catch (e) {
      this.options.onError(e);
      if (x && !x.closed) {
        try {
          x.respond(500, {}, true);
        } catch { /* head already sent */ }
        x.end();
      }
    }
  }

  #accept(sock: net.Socket): void {
    if (this.#closing) return void sock.destroy();
    this.#sockets.add(sock);
    sock.once("close", () => {
      this.#sockets.delete(sock);
      this.#busy.delete(sock);
    });
    sock.on("error", () => {});
    sock.setNoDelay(true);
    if (sock instanceof tls.TLSSocket) {
      const h2 = sock.alpnProtocol === "h2";
      (sock as net.Socket & { tpH2?: boolean }).tpH2 = h2;
      (h2 ? this.#h2 : this.#h1).emit("connection", sock);
      return;
    }
    // Plain TCP: read until the bytes either are the HTTP/2 preface or cannot be, then hand the connection over with
    // those bytes put back.
    let head = new Uint8Array(0);
    const timer = setTimeout(() => sock.destroy(), HEAD_TIMEOUT_MS);
    const onData = (chunk: Uint8Array) => {
      const next = new Uint8Array(head.length + chunk.length);
      next.set(head);
      next.set(chunk, head.length);
      head = next;
      const n = Math.min(head.length, PREFACE.length);
      let prefix = true;
      for (let i = 0; i < n; i++) if (head[i] !== PREFACE[i]) prefix = false;
      if (prefix && head.length < PREFACE.length) return; // maybe HTTP/2, not enough bytes yet
      clearTimeout(timer);
      sock.off("data", onData);
      sock.off("close", onClose);
      sock.pause();
      sock.unshift(head);
      (sock as net.Socket & { tpH2?: boolean }).tpH2 = prefix;
      (prefix ? this.#h2 : this.#h1).emit("connection", sock);
      sock.resume();
    };
    const onClose = () => clearTimeout(timer);
    sock.on("data", onData);
    sock.once("close", onClose);
  }
}

function h2Exchange(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): Exchange {
  let closed = false;
  let ended = false;
  const closers: ((aborted: boolean) => void)[] = [];
  stream.once("close", () => {
    closed = true;
    const aborted = !ended || stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR;
    for (const f of closers) f(aborted);
  });
  return {
    httpVersion: "2",
    method: String(headers[":method"] ?? ""),
    path: String(headers[":path"] ?? ""),
    header: (name) => {
      const v = headers[name];
      return Array.isArray(v) ? v.join(", ") : v;
    },
    body: stream,
    respond(status, h, end = false) {
      if (closed || stream.headersSent) return;
      stream.respond({ ":status": status, ...h }, { endStream: end });
      if (end) {
        ended = true;
        closeAfterResponse(stream);
      }
    },
    write: (chunk) => closed ? false : stream.write(chunk),
    drained: () => waitDrain(stream),
    end(chunk) {
      if (ended || closed) return;
      ended = true;
      const done = () => closeAfterResponse(stream);
      if (chunk) stream.end(chunk, done);
      else stream.end(done);
    },
    get writableLength() {
      return stream.writableLength;
    },
    get closed() {
      return closed;
    },
    onClose: (f) => {
      if (closed) f(!ended);
      else closers.push(f);
    },
  };
}

/**
 * A complete response ends the exchange: when the client has not ended its request (a tunnel it stopped using, a
 * rejected upload), RST_STREAM NO_ERROR closes the stream, as RFC 9113 section 8.1 allows, so neither side holds it
 * (nor does a graceful shutdown wait for it). Only once our END_STREAM has gone out, so the RST cannot overtake queued
 * DATA; and never on a stream the client already ended (Deno's nghttp2 binding aborts the process on a later GOAWAY
 * after a RST on such a stream).
 */
function closeAfterResponse(stream: http2.ServerHttp2Stream, tries = 200): void {
  if (stream.closed || stream.destroyed) return;
  const state = stream.state as { localClose?: number; remoteClose?: number };
  if (state.remoteClose) return; // the stream closes by itself once the client's side is read
  if (!state.localClose && tries > 0) {
    setTimeout(() => closeAfterResponse(stream, tries - 1), 5);
    return;
  }
  stream.close(http2.constants.NGHTTP2_NO_ERROR);
}

function h1Exchange(req: http.IncomingMessage, res: http.ServerResponse): Exchange {
  let closed = false;
  const closers: ((aborted: boolean) => void)[] = [];
  res.once("close", () => {
    closed = true;
    for (const f of closers) f(!res.writableFinished);
  });
  return {
    httpVersion: "1.1",
    method: req.method ?? "",
    path: req.url ?? "",
    header: (name) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v.join(", ") : v;
    },
    body: req,
    respond(status, h, end = false) {
      if (closed || res.headersSent) return;
      res.writeHead(status, h);
      if (end) res.end();
    },
    write: (chunk) => closed ? false : res.write(chunk),
    drained: () => waitDrain(res),
    end(chunk) {
      if (closed || res.writableEnded) return;
      if (chunk) res.end(chunk);
      else res.end();
    },
    get writableLength() {
      return res.writableLength;
    },
    get closed() {
      return closed;
    },
    onClose: (f) => {
      if (closed) f(!res.writableFinished);
      else closers.push(f);
    },
  };
}

function waitDrain(w: http2.ServerHttp2Stream | http.ServerResponse): Promise<void> {
  if (!w.writableNeedDrain || w.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      w.off("drain", done);
      w.off("close", done);
      resolve();
    };
    w.on("drain", done);
    w.on("close", done);
  });
}
