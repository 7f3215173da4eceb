/**
 * The upstream forwarder: asks the workstation's original nameservers over kernel sockets, the way the C library
 * would have. UDP first, with a random id, from a socket that is replaced every 256 queries; an answer with TC set
 * is asked again over TCP (RFC 1035 section 4.2.1, RFC 7766 section 5). A server that times out, fails, or answers
 * SERVFAIL or REFUSED is followed by the next one, as glibc's res_send does.
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

/** A forwarder that holds sockets: `close()` it when done. */
export interface NameserverForwarder extends Forwarder {
  close(): Promise<void>;
}

const HEADER_LEN = 12;

/** A forwarder to these nameservers, tried in order. */
export function nameserverForwarder(
  servers: readonly Nameserver[],
  options: NameserverForwarderOptions = {},
): NameserverForwarder {
  if (servers.length === 0) throw new TypeError("A nameserver forwarder needs at least one nameserver");
  const attemptMs = options.attemptTimeoutMs ?? 2_000;
  const channels = servers.map((s) => new UdpChannel({ ip: s.ip, port: s.port ?? 53 }));
  const forward = async (query: Uint8Array, signal: AbortSignal): Promise<Uint8Array> => {
    if (query.length < HEADER_LEN) {
      throw new RangeError(`A DNS query of ${query.length} bytes is shorter than a header`);
    }
    let last: Uint8Array | null = null;
    let lastError: unknown = null;
    for (const channel of channels) {
      if (signal.aborted) break;
      try {
        let answer = await channel.exchange(query, attemptMs, signal);
        if ((answer[2]! & 0x02) !== 0) answer = await tcpExchange(query, channel.server, attemptMs, signal);
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
  return Object.assign(forward, {
    async close() {
      await Promise.all(channels.map((c) => c.close()));
    },
  });
}

/**
 * A socket carries up to this many queries, each with a random id not in flight on it; then a new socket (a new
 * random source port) takes over and the old one closes after its last answer. Ids and ports stay hard to guess
 * (RFC 5452 section 9.2) without the cost of a socket per query.
 */
const SOCKET_USES = 256;

interface Generation {
  sock: dgram.Socket;
  pending: Map<number, (answer: Uint8Array | Error) => void>;
  uses: number;
}

/** Queries to one server over UDP. */
class UdpChannel {
  readonly server: { ip: string; port: number };
  #current: Generation | null = null;
  #all = new Set<Generation>();

  constructor(server: { ip: string; port: number }) {
    this.server = server;
  }

  #generation(): Generation {
    if (this.#current && this.#current.uses < SOCKET_USES) return this.#current;
    const old = this.#current;
    const gen: Generation = {
      sock: dgram.createSocket(this.server.ip.includes(":") ? "udp6" : "udp4"),
      pending: new Map(),
      uses: 0,
    };
    gen.sock.on("message", (msg: Uint8Array, rinfo: { address: string; port: number }) => {
      // Only the server's answer to an id in flight counts (RFC 5452 section 4); anything else is ignored.
      if (rinfo.port !== this.server.port || !sameAddress(rinfo.address, this.server.ip)) return;
      if (msg.length < HEADER_LEN || (msg[2]! & 0x80) === 0) return;
      gen.pending.get((msg[0]! << 8) | msg[1]!)?.(new Uint8Array(msg));
    });
    gen.sock.on("error", (e: Error) => {
      for (const settle of [...gen.pending.values()]) settle(e);
    });
    this.#all.add(gen);
    this.#current = gen;
    if (old) this.#retireIfIdle(old);
    return gen;
  }

  #retireIfIdle(gen: Generation): void {
    if (gen !== this.#current && gen.pending.size === 0 && this.#all.delete(gen)) gen.sock.close();
  }

  exchange(query: Uint8Array, timeoutMs: number, signal: AbortSignal): Promise<Uint8Array> {
    const gen = this.#generation();
    gen.uses++;
    let id: number;
    do id = crypto.getRandomValues(new Uint16Array(1))[0]!; while (gen.pending.has(id));
    const q = query.slice();
    q[0] = id >>> 8;
    q[1] = id & 0xff;
    return new Promise((resolve, reject) => {
      const settle = (r: Uint8Array | Error) => {
        if (gen.pending.get(id) !== settle) return;
        gen.pending.delete(id);
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.#retireIfIdle(gen);
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
      const onAbort = () => settle(new Error("aborted"));
      const timer = setTimeout(
        () => settle(new Error(`${this.server.ip}:${this.server.port} did not answer`)),
        timeoutMs,
      );
      gen.pending.set(id, settle);
      signal.addEventListener("abort", onAbort);
      gen.sock.send(q, this.server.port, this.server.ip, (e: Error | null) => {
        if (e) settle(e);
      });
    });
  }

  /** Ends every query in flight and closes every socket. */
  async close(): Promise<void> {
    this.#current = null;
    const gens = [...this.#all];
    this.#all.clear();
    for (const gen of gens) {
      for (const settle of [...gen.pending.values()]) settle(new Error("the forwarder was closed"));
      await new Promise<void>((resolve) => gen.sock.close(() => resolve()));
    }
  }
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
