/**
 * Test infrastructure: a DNS server on kernel sockets (UDP and TCP on one address and port) in front of tp's
 * `Resolver`, for the DNS lab's child (`dns_lab_child.ts`, which the DNS lab tests and `scripts/bench_dns.ts` run).
 * The daemon needs no such socket: its router terminates the UDP flows and TCP connections to tp's DNS address and
 * hands them to `cli/daemon/dns.ts`.
 */
import dgram from "node:dgram";
import type { Resolver } from "../net/dns/resolver.ts";
import { frameTcp, TcpDeframer } from "../net/dns/tcp_framing.ts";

export interface DnsServerOptions {
  hostname: string;
  port: number;
  /** The clock given to the resolver (ms). Default `performance.now`. */
  now?: () => number;
  /** A TCP connection with no query for this long is closed (RFC 7766 section 6.2.3). Default 10,000 ms. */
  tcpIdleMs?: number;
}

export interface DnsServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  /** Stops listening, closes TCP connections, and waits for queries in flight. */
  close(): Promise<void>;
}

export async function serveDns(resolver: Resolver, options: DnsServerOptions): Promise<DnsServer> {
  const now = options.now ?? (() => performance.now());
  const idleMs = options.tcpIdleMs ?? 10_000;
  const udp = dgram.createSocket(options.hostname.includes(":") ? "udp6" : "udp4");
  const pending = new Set<Promise<unknown>>();
  const track = (p: Promise<unknown>) => {
    pending.add(p);
    p.finally(() => pending.delete(p));
  };
  await new Promise<void>((resolve, reject) => {
    udp.once("error", reject);
    udp.bind(options.port, options.hostname, () => {
      udp.off("error", reject);
      resolve();
    });
  });
  const port = udp.address().port;
  let closing = false;
  udp.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
    track(
      resolver.resolve(new Uint8Array(msg), now(), { transport: "udp" }).then((answer) => {
        if (answer && !closing) udp.send(answer, rinfo.port, rinfo.address);
      }),
    );
  });
  udp.on("error", () => {/* a send error (e.g. the client's port closed) concerns one query only */});

  const listener = Deno.listen({ hostname: options.hostname, port, transport: "tcp" });
  const conns = new Set<Deno.Conn>();
  const serveConn = async (conn: Deno.Conn) => {
    conns.add(conn);
    const deframer = new TcpDeframer();
    const buf = new Uint8Array(16_384);
    let writing = Promise.resolve();
    let idle = setTimeout(() => conn.close(), idleMs);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        clearTimeout(idle);
        idle = setTimeout(() => conn.close(), idleMs);
        for (const msg of deframer.push(buf.subarray(0, n))) {
          // Pipelined queries are resolved concurrently and answered as they complete (RFC 7766 section 6.2.1.1).
          const p = resolver.resolve(msg, now(), { transport: "tcp" }).then((answer) => {
            if (!answer) return;
            const framed = frameTcp(answer);
            writing = writing.then(async () => {
              for (let o = 0; o < framed.length;) o += await conn.write(framed.subarray(o));
            }).catch(() => {});
            return writing;
          });
          track(p);
        }
        if (deframer.broken) break;
      }
    } catch {
      // The connection was closed under us (idle timeout, close(), or the client reset it).
    } finally {
      clearTimeout(idle);
      await writing;
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed already */ }
    }
  };
  const accepting = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return; // the listener was closed
      }
      track(serveConn(conn));
    }
  })();

  return {
    port,
    async close() {
      closing = true;
      listener.close();
      await accepting;
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed already */ }
      }
      // Bounded: each resolve ends within the resolver's timeout.
      await Promise.allSettled([...pending]);
      await new Promise<void>((resolve) => udp.close(() => resolve()));
    },
  };
}
