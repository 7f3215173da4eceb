/**
 * The manager's port: tp's own HTTP/2 server (proto/h2/) for gRPC-web calls, and HTTP/1.1 on the same port for
 * /metrics, /healthz, Kubernetes probes and HTTP/1.1 gRPC-web clients.
 *
 * Each accepted connection is told apart by its first bytes (h2c with prior knowledge starts with the HTTP/2
 * preface) or, over TLS, by ALPN ("h2"). HTTP/2 goes to our server, with no limit on streams per connection but the
 * sessions' own; anything else is relayed, byte for byte, to a Deno.serve on 127.0.0.1 (an ephemeral port) that
 * runs the same handler. The relay costs a hop, on a path that carries a few small requests.
 */
import { Connection } from "../proto/h2/connection.ts";
import { PREFACE } from "../proto/h2/frame.ts";
import { ConnTransport } from "../proto/h2/transport.ts";
import { H2Call } from "./h2_call.ts";
import type { Manager } from "./server.ts";
import { Status } from "../proto/grpc_web.ts";

export interface ServeOptions {
  signal?: AbortSignal;
  onListen?: (addr: Deno.NetAddr) => void;
  /** Called once the agent port (config.agentListen) listens. */
  onAgentListen?: (addr: Deno.NetAddr) => void;
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

/** HTTP/2 settings of the manager's connections: the same windows the client uses (proto/channel.ts says why). */
const H2_OPTIONS = { streamWindow: 4 << 20, connectionWindow: 32 << 20, maxFrameSize: 1 << 17 };
/** Bound on waiting for a connection's first bytes (or TLS handshake) before it is dropped. */
const SNIFF_TIMEOUT_MS = 10_000;

/** Serves a manager on its config's address (TLS when the config has a certificate). */
export function serveManager(manager: Manager, options: ServeOptions = {}): ManagerServer {
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
          manager.logger.warn("handler error", { reason: e instanceof Error ? e.message : String(e) });
          return new Response(null, { status: 200, headers: { "grpc-status": String(Status.INTERNAL) } });
        },
      }, manager.handler);
    });
  let stopping = false;

  const serveH2 = (conn: Deno.Conn, first: Uint8Array, port: ManagerPort) => {
    const t = new ConnTransport(conn);
    const c: Connection = new Connection("server", t, {
      ...H2_OPTIONS,
      onStream: (s) => {
        const call = new H2Call(s);
        manager.serveCall(call, port).catch((e) => {
          manager.logger.warn("handler error", { reason: e instanceof Error ? e.message : String(e) });
          if (!call.responded) call.trailersOnly(Status.INTERNAL, "internal error");
        });
      },
    });
    h2.add(c);
    c.closed.then(() => h2.delete(c));
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
      const timer = setTimeout(() => close(conn), SNIFF_TIMEOUT_MS);
      let alpn: string | null = null;
      try {
        if ("handshake" in conn) alpn = (await (conn as Deno.TlsConn).handshake()).alpnProtocol;
        const first = alpn === "h2" ? new Uint8Array(0) : await sniff(conn);
        if (stopping) return close(conn);
        if (alpn === "h2" || startsWithPreface(first)) serveH2(conn, first, port);
        else if (port === "main") void relay(conn, first);
        else close(conn); // the agent port speaks only HTTP/2
      } finally {
        clearTimeout(timer);
      }
    } catch {
      close(conn);
    }
  };

  const acceptAll = async (l: Deno.Listener, port: ManagerPort) => {
    try {
      for await (const conn of l) void accept(conn, port);
    } catch (e) {
      if (!stopping) manager.logger.warn("listener failed", { reason: e instanceof Error ? e.message : String(e) });
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

/** Reads until the bytes can be told apart from the HTTP/2 preface (at most its 24 bytes). */
async function sniff(conn: Deno.Conn): Promise<Uint8Array> {
  const buf = new Uint8Array(PREFACE.length);
  let n = 0;
  while (n < buf.length) {
    const k = await conn.read(buf.subarray(n));
    if (k === null) break;
    n += k;
    if (!startsWithPreface(buf.subarray(0, n))) break;
  }
  return buf.slice(0, n);
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
  try {
    c?.close();
  } catch {
    // already closed
  }
}
