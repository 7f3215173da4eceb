/**
 * The upstream forwarder: asks the workstation's original nameservers over kernel sockets, the way the C library
 * would have. UDP first, from a fresh socket (a random source port) with a random id; an answer with TC set is asked
 * again over TCP (RFC 1035 section 4.2.1, RFC 7766 section 5). A server that times out, fails, or answers SERVFAIL
 * or REFUSED is followed by the next one, as glibc's res_send does.
 */
import dgram from "node:dgram";
import { frameTcp, TcpDeframer } from "../../net/dns/tcp_framing.ts";
import type { Forwarder } from "../../net/dns/resolver.ts";

export interface Nameserver {
  ip: string;
  /** Default 53. */
  port?: number;
}

export interface NameserverForwarderOptions {
  /** How long one server has to answer over UDP (and, separately, over TCP), in ms. Default 2,000. */
  attemptTimeoutMs?: number;
}

const HEADER_LEN = 12;

/** A forwarder to these nameservers, tried in order. */
export function nameserverForwarder(
  servers: readonly Nameserver[],
  options: NameserverForwarderOptions = {},
): Forwarder {
  if (servers.length === 0) throw new TypeError("A nameserver forwarder needs at least one nameserver");
  const attemptMs = options.attemptTimeoutMs ?? 2_000;
  return async (query: Uint8Array, signal: AbortSignal): Promise<Uint8Array> => {
    if (query.length < HEADER_LEN) {
      throw new RangeError(`A DNS query of ${query.length} bytes is shorter than a header`);
    }
    let last: Uint8Array | null = null;
    let lastError: unknown = null;
    for (const server of servers) {
      if (signal.aborted) break;
      const s = { ip: server.ip, port: server.port ?? 53 };
      try {
        const id = crypto.getRandomValues(new Uint16Array(1))[0]!;
        const q = query.slice();
        q[0] = id >>> 8;
        q[1] = id & 0xff;
        let answer = await udpExchange(q, s, attemptMs, signal);
        if ((answer[2]! & 0x02) !== 0) answer = await tcpExchange(q, s, attemptMs, signal);
        answer = answer.slice();
        answer[0] = query[0]!;
        answer[1] = query[1]!;
        const rcode = answer[3]! & 0x0f;
        if (rcode === 2 || rcode === 5) {
          last = answer;
          continue;
        }
        return answer;
      } catch (e) {
        lastError = e;
      }
    }
    if (last) return last;
    throw new Error(
      `No nameserver answered (${servers.map((s) => `${s.ip}:${s.port ?? 53}`).join(", ")}): ${
        lastError instanceof Error ? lastError.message : signal.aborted ? "aborted" : String(lastError)
      }`,
    );
  };
}

function udpExchange(
  query: Uint8Array,
  server: { ip: string; port: number },
  timeoutMs: number,
  signal: AbortSignal,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(server.ip.includes(":") ? "udp6" : "udp4");
    let settled = false;
    const finish = (err: Error | null, answer?: Uint8Array) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      sock.close(() => err ? reject(err) : resolve(answer!));
    };
    const onAbort = () => finish(new Error("aborted"));
    const timer = setTimeout(() => finish(new Error(`${server.ip}:${server.port} did not answer`)), timeoutMs);
    signal.addEventListener("abort", onAbort);
    sock.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
      // Only the server's answer with our id counts (RFC 5452 section 4); anything else is ignored.
      if (rinfo.port !== server.port || !sameAddress(rinfo.address, server.ip)) return;
      if (msg.length < HEADER_LEN || msg[0] !== query[0] || msg[1] !== query[1] || (msg[2]! & 0x80) === 0) return;
      finish(null, new Uint8Array(msg));
    });
    sock.on("error", (e: Error) => finish(e));
    sock.send(query, server.port, server.ip, (e: Error | null) => {
      if (e) finish(e);
    });
  });
}

function sameAddress(a: string, b: string): boolean {
  return a === b || a.replace(/^::ffff:/, "") === b.replace(/^::ffff:/, "");
}

async function tcpExchange(
  query: Uint8Array,
  server: { ip: string; port: number },
  timeoutMs: number,
  signal: AbortSignal,
): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: server.ip, port: server.port, transport: "tcp" });
  let timedOut = false;
  const stop = () => {
    timedOut = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  const timer = setTimeout(stop, timeoutMs);
  signal.addEventListener("abort", stop);
  try {
    const framed = frameTcp(query);
    for (let o = 0; o < framed.length;) o += await conn.write(framed.subarray(o));
    const deframer = new TcpDeframer();
    const buf = new Uint8Array(65_537);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) throw new Error(`${server.ip}:${server.port} closed the TCP connection without an answer`);
      for (const m of deframer.push(buf.subarray(0, n))) {
        if (m.length >= HEADER_LEN && m[0] === query[0] && m[1] === query[1]) return m;
      }
      if (deframer.broken) throw new Error(`${server.ip}:${server.port} sent a zero-length TCP message`);
    }
  } catch (e) {
    if (timedOut) throw new Error(`${server.ip}:${server.port} did not answer over TCP`);
    throw e;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", stop);
    if (!timedOut) conn.close();
  }
}
