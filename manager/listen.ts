/**
 * The manager's port: tp's own HTTP/2 server (proto/h2/) for gRPC-web calls, and HTTP/1.1 on the same port for
 * /metrics, /healthz, Kubernetes probes and HTTP/1.1 gRPC-web clients.
 *
 * Each accepted connection is told apart by its first bytes (h2c with prior knowledge starts with the HTTP/2
 * preface) or, over TLS, by ALPN ("h2"). HTTP/2 goes to our server; an HTTP/1.1 request line is relayed, byte for
 * byte, to a Deno.serve on 127.0.0.1 (an ephemeral port) that runs the same handler (the relay costs a hop, on a path
 * that carries a few small requests); anything else is taken as a broken HTTP/2 preface and answered with GOAWAY
 * PROTOCOL_ERROR (RFC 9113 section 3.4).
 *
 * What one client can take (issue 14, each limit tested in tests/manager_h2_attack_test.ts): connections in all and
 * per source address (over them a new connection is closed at once), a deadline for the first bytes (slowloris),
 * the HTTP/2 limits of proto/h2/limits.ts, and streams per connection (MAX_CONCURRENT_STREAMS, advertised and
 * enforced). An error accepting (EMFILE when out of file descriptors) backs off and accepts again: it never ends
 * the listener.
 */
import { Connection } from "../proto/h2/connection.ts";
import { ConnTransport } from "../proto/h2/transport.ts";
import { H2Call } from "./h2_call.ts";
import type { Logger } from "./log.ts";
import type { ManagerConfig } from "./config.ts";
import type { Metrics } from "./metrics.ts";
import type { ServerCall } from "./call.ts";
import { ErrorCode, PREFACE } from "../proto/h2/frame.ts";
import { Status } from "../proto/grpc_web.ts";
import { errorMessage } from "../base/error_message.ts";

export interface ServeOptions {
  signal?: AbortSignal;
  /** Connection limits; the defaults are LISTEN_LIMITS. */
  limits?: Partial<ListenLimits>;
  /** Called with each HTTP/2 connection as it starts (tests read its counters and how it ended). */
  onConnection?: (c: Connection) => void;
  onListen?: (addr: Deno.NetAddr) => void;
  /** Called once the agent port (config.agentListen) listens. */
  onAgentListen?: (addr: Deno.NetAddr) => void;
}

/**
 * What the listener needs of the manager (`Manager` in server.ts, which dispatches each call to its method): its
 * config, logger and metrics, a handler for HTTP/1.1 requests and one for each HTTP/2 call.
 */
export interface ListenHost {
  readonly config: ManagerConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Starts the manager's own timers (session expiry, idle sweeps) before the first connection. */
  start(): void;
  /** Answers an HTTP/1.1 request (relayed from the port to a loopback Deno.serve). */
  readonly handler: (req: Request) => Promise<Response>;
  /** Serves one HTTP/2 call to its end. */
  serveCall(call: ServerCall, port: ManagerPort): Promise<void>;
}

/** Which of the manager's ports a call came in on: "main" serves everything, "agent" only the agents' methods. */
export type ManagerPort = "main" | "agent";

export interface ManagerServer {
  readonly addr: Deno.NetAddr;
  /** Resolves when the listener stopped (shutdown, or an error accepting). */
  readonly finished: Promise<void>;
  /** Stops accepting, sends GOAWAY on every HTTP/2 connection and waits for their streams to end. */
  shutdown(): Promise<void>;
}

export interface ListenLimits {
  /** Connections open at once, all ports together. */
  maxConnections: number;
  /**
   * Connections open at once from one address. In a cluster every port-forward arrives from the pod's loopback,
   * so this is also a cap on workstations: it is set for many.
   */
  maxConnectionsPerSource: number;
  /** Time for a connection's first bytes (the preface, or a request line; the TLS handshake too). */
  prefaceTimeoutMs: number;
  /** Streams open at once on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxStreamsPerConnection: number;
}

export const LISTEN_LIMITS: Readonly<ListenLimits> = {
  maxConnections: 1024,
  maxConnectionsPerSource: 256,
  prefaceTimeoutMs: 10_000,
  // A session's streams (ManagerConfig.maxStreamsPerSession, 4096 by default) and a few calls besides; a client past
  // it queues its streams (proto/h2/connection.ts) instead of failing them.
  maxStreamsPerConnection: 4096 + 64,
};

/**
 * HTTP/2 settings of the manager's connections: the same windows the client uses (proto/channel.ts says why). Frames
 * of at most 16,384 bytes, RFC 9113's default, as nghttpd advertises: 128 KiB measured no faster on the tunnel's
 * upload (scripts/bench_h2_ab.ts, README), a peer holds at most 16 KiB of a partial frame here, and clients that
 * assume the default (h2spec's case 4.2/3) are right. Downloads use the client's own, larger frames.
 */
const H2_OPTIONS = { streamWindow: 4 << 20, connectionWindow: 32 << 20, maxFrameSize: 1 << 14, flush: "io" } as const;
/** How long to wait before accepting again after accept() failed (EMFILE...): doubled up to the maximum. */
const ACCEPT_BACKOFF_MS = 10;
const ACCEPT_BACKOFF_MAX_MS = 1_000;
/** The methods of HTTP/1.1 (RFC 9110 section 9): a request line that starts with one is relayed. */
const HTTP1_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

/** Serves a manager on its config's address (TLS when the config has a certificate). */
export function serveManager(manager: ListenHost, options: ServeOptions = {}): ManagerServer {
  const { listen, tls } = manager.config;
  manager.start();
  const listener: Deno.Listener = tls
    ? Deno.listenTls({
      hostname: listen.host,
      port: listen.port,
      cert: tls.cert,
      key: tls.key,
      alpnProtocols: ["h2", "http/1.1"],
    })
    : Deno.listen({ hostname: listen.host, port: listen.port });
  const addr = listener.addr as Deno.NetAddr;
  const limits: ListenLimits = { ...LISTEN_LIMITS, ...options.limits };
  const perSource = new Map<string, number>();
  let open = 0;
  const h2 = new Set<Connection>();
  const relayed = new Set<Deno.Conn>();
  const http1 = new AbortController();
  let h1Addr: Promise<Deno.NetAddr> | undefined;
  let h1Server: Deno.HttpServer | undefined;
  const http1Server = () =>
    h1Addr ??= new Promise((resolve) => {
      h1Server = Deno.serve({
        hostname: "127.0.0.1",
        port: 0,
        signal: http1.signal,
        onListen: (a) => resolve(a),
        onError: (e: unknown) => {
          manager.logger.warn("handler error", { reason: errorMessage(e) });
          return new Response(null, { status: 200, headers: { "grpc-status": String(Status.INTERNAL) } });
        },
      }, manager.handler);
    });
  let stopping = false;

  const serveH2 = (conn: Deno.Conn, first: Uint8Array, port: ManagerPort) => {
    const t = new ConnTransport(conn);
    const c: Connection = new Connection("server", t, {
      ...H2_OPTIONS,
      maxConcurrentStreams: limits.maxStreamsPerConnection,
      onHandlerError: (e) => manager.logger.warn("handler error", { reason: errorMessage(e) }),
      onStream: (s) => {
        const call = new H2Call(s);
        manager.serveCall(call, port).catch((e) => {
          manager.logger.warn("handler error", { reason: errorMessage(e) });
          if (!call.responded) call.trailersOnly(Status.INTERNAL, "internal error");
          else s.reset(ErrorCode.INTERNAL_ERROR);
        });
      },
    });
    h2.add(c);
    options.onConnection?.(c);
    // The rest of the preface (the client's SETTINGS) is due within the same deadline as its first bytes.
    const timer = setTimeout(() => {
      if (!c.prefaceReceived) c.destroy(ErrorCode.PROTOCOL_ERROR, "No connection preface in time");
    }, limits.prefaceTimeoutMs);
    c.closed.then(() => {
      clearTimeout(timer);
      h2.delete(c);
      release(conn);
    });
    if (first.length > 0) c.receive(first);
    void t.run(c);
  };

  const relay = async (conn: Deno.Conn, first: Uint8Array) => {
    relayed.add(conn);
    let inner: Deno.Conn | undefined;
    try {
      const a = await http1Server();
      inner = await Deno.connect({ hostname: a.hostname, port: a.port });
      await inner.write(first);
      const i = inner;
      await Promise.all([pipe(conn, i), pipe(i, conn)]);
    } catch {
      // either side went away
    } finally {
      relayed.delete(conn);
      close(inner);
      close(conn);
    }
  };

  const accept = async (conn: Deno.Conn, port: ManagerPort) => {
    try {
      const timer = setTimeout(() => close(conn), limits.prefaceTimeoutMs);
      let alpn: string | null = null;
      try {
        if ("handshake" in conn) alpn = (await (conn as Deno.TlsConn).handshake()).alpnProtocol;
        const first = alpn === "h2" ? new Uint8Array(0) : await sniff(conn);
        if (stopping || first.length === 0 && alpn !== "h2") return close(conn);
        if (alpn === "http/1.1" || (!alpn && isHttp1(first))) {
          if (port === "main") void relay(conn, first);
          else close(conn); // the agent port speaks only HTTP/2
        } // HTTP/2, or bytes that are neither: our server answers a broken preface with GOAWAY PROTOCOL_ERROR.
        else serveH2(conn, first, port);
      } finally {
        clearTimeout(timer);
      }
    } catch {
      close(conn);
    }
  };

  /** Counts `conn` against the limits; false (and closed) when it is over one. */
  const admit = (conn: Deno.Conn): boolean => {
    const source = (conn.remoteAddr as Deno.NetAddr).hostname ?? "";
    const n = perSource.get(source) ?? 0;
    if (open >= limits.maxConnections || n >= limits.maxConnectionsPerSource) {
      manager.metrics.rejected.add({ reason: open >= limits.maxConnections ? "connections" : "source-connections" }, 1);
      close(conn);
      return false;
    }
    open++;
    perSource.set(source, n + 1);
    let released = false;
    tracked.set(conn, () => {
      if (released) return;
      released = true;
      open--;
      const left = (perSource.get(source) ?? 1) - 1;
      if (left > 0) perSource.set(source, left);
      else perSource.delete(source);
    });
    return true;
  };

  const acceptAll = async (l: Deno.Listener, port: ManagerPort) => {
    let backoff = 0;
    while (!stopping) {
      let conn: Deno.Conn;
      try {
        conn = await l.accept();
      } catch (e) {
        if (stopping || e instanceof Deno.errors.BadResource) break;
        // Out of file descriptors (EMFILE, ENFILE) or a connection that died in the backlog: the listener itself is
        // fine. Waiting lets connections close and free descriptors; the loop never ends for it.
        backoff = Math.min(ACCEPT_BACKOFF_MAX_MS, backoff === 0 ? ACCEPT_BACKOFF_MS : backoff * 2);
        manager.metrics.rejected.add({ reason: "accept-error" }, 1);
        manager.logger.warn("accept failed, retrying", { reason: errorMessage(e), retryMs: backoff });
        await new Promise((r) => setTimeout(r, backoff));
        continue;
      }
      backoff = 0;
      if (admit(conn)) void accept(conn, port);
    }
  };
  // The agent port: only the traffic-agents' methods, each agent admitted by its workload's credential.
  const agentListen = manager.config.agentListen;
  const agentListener: Deno.Listener | undefined = agentListen
    ? tls
      ? Deno.listenTls({
        hostname: agentListen.host,
        port: agentListen.port,
        cert: tls.cert,
        key: tls.key,
        alpnProtocols: ["h2"],
      })
      : Deno.listen({ hostname: agentListen.host, port: agentListen.port })
    : undefined;
  const finished = (async () => {
    options.onListen?.(addr);
    if (agentListener) options.onAgentListen?.(agentListener.addr as Deno.NetAddr);
    await Promise.all([acceptAll(listener, "main"), agentListener && acceptAll(agentListener, "agent")]);
  })();

  const shutdown = async () => {
    if (!stopping) {
      stopping = true;
      close(listener);
      close(agentListener);
      http1.abort();
    }
    for (const c of h2) c.close();
    for (const c of relayed) close(c);
    await Promise.all([finished, h1Server?.finished, ...[...h2].map((c) => c.closed)]);
  };
  options.signal?.addEventListener("abort", () => void shutdown(), { once: true });
  return { addr, finished, shutdown };
}

/** Reads until the bytes are the HTTP/2 preface, an HTTP/1.1 method and a space, or neither (at most 24 bytes). */
async function sniff(conn: Deno.Conn): Promise<Uint8Array> {
  const buf = new Uint8Array(PREFACE.length);
  let n = 0;
  while (n < buf.length) {
    const k = await conn.read(buf.subarray(n));
    if (k === null) break;
    n += k;
    if (!undecided(buf.subarray(0, n))) break;
  }
  return buf.slice(0, n);
}

/** Whether more bytes could still make `b` the preface or an HTTP/1.1 request line. */
function undecided(b: Uint8Array): boolean {
  if (startsWithPreface(b)) return true;
  if (b.length >= 8 || b.includes(0x20)) return false;
  const head = new TextDecoder().decode(b);
  return HTTP1_METHODS.some((m) => m.startsWith(head));
}

/** Whether `b` is the preface or a prefix of it (an empty `b` is not). */
function startsWithPreface(b: Uint8Array): boolean {
  if (b.length === 0) return false;
  for (let i = 0; i < b.length && i < PREFACE.length; i++) if (b[i] !== PREFACE[i]) return false;
  return true;
}

async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
  } finally {
    try {
      await (to as Deno.TcpConn).closeWrite();
    } catch {
      // already closed
    }
  }
}

function close(c: { close(): void } | undefined): void {
  if (c) release(c as Deno.Conn);
  try {
    c?.close();
  } catch {
    // already closed
  }
}

/** Admitted connections, each with what gives its place back (called once, when it is closed). */
const tracked = new WeakMap<Deno.Conn, () => void>();

function release(conn: Deno.Conn): void {
  tracked.get(conn)?.();
}

/** Whether the first bytes are an HTTP/1.1 request line's method and a space. */
function isHttp1(first: Uint8Array): boolean {
  const head = new TextDecoder().decode(first.subarray(0, 8));
  return HTTP1_METHODS.some((m) => head.startsWith(`${m} `));
}

/**
 * Keeps the process alive through a bug: an exception or rejection nobody caught is logged, not fatal (the daemon
 * does the same). For `tp manager`; returns what removes the handlers.
 */
export function guardProcess(logger: Logger): () => void {
  const onUnhandled = (e: PromiseRejectionEvent | ErrorEvent) => {
    e.preventDefault();
    const err = "reason" in e ? e.reason : e.error;
    logger.warn("internal error", { reason: (err as Error)?.stack ?? String(err) });
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  globalThis.addEventListener("error", onUnhandled);
  return () => {
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
    globalThis.removeEventListener("error", onUnhandled);
  };
}
