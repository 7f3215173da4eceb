/**
 * Raw DNS forwarding: the client's DNS message goes to the cluster DNS server unchanged, and its reply comes back
 * unchanged (same id, flags, rcode and records). UDP first; a truncated reply (TC bit, RFC 1035 section 4.1.1) is
 * asked again over TCP with the 2-byte length prefix of RFC 1035 section 4.2.2.
 */
import dgram from "node:dgram";
import net from "node:net";
import { GrpcError, Status } from "../proto/grpc_web.ts";
import type { HostPort } from "./config.ts";

/** A DNS header is 12 bytes (RFC 1035 section 4.1.1). */
const DNS_HEADER_LEN = 12;

/**
 * Forwards raw DNS queries to one server over ONE long-lived UDP socket (created on first use), the way dnsmasq and
 * CoreDNS's forward plugin do: each query goes out under an id of our own, random and unique among those in flight,
 * and its answer comes back with the client's id restored. A socket per query (what this replaced) cost a socket,
 * a bind and a close per lookup, most of an uncached lookup's time on the manager.
 *
 * An answer is taken only from the server's address, for an id in flight, with the same question section as the
 * query (RFC 5452 section 9.1's checks); anything else is ignored. A truncated answer (TC) is asked again over TCP.
 */
export class DnsForwarder {
  #sock: dgram.Socket | undefined;
  readonly #pending = new Map<number, { query: Uint8Array; resolve: (a: Uint8Array) => void }>();
  #closed = false;

  constructor(readonly server: HostPort) {}

  /** Queries in flight. */
  get inFlight(): number {
    return this.#pending.size;
  }

  async forward(query: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (query.length < DNS_HEADER_LEN) {
      throw new GrpcError(Status.INVALID_ARGUMENT, `DNS query of ${query.length} bytes is shorter than a header`);
    }
    if ((query[2]! & 0x80) !== 0) {
      throw new GrpcError(Status.INVALID_ARGUMENT, "DNS message is a response, not a query");
    }
    const answer = await this.#udp(query, timeoutMs);
    if ((answer[2]! & 0x02) === 0) return answer;
    return await tcpExchange(query, this.server, timeoutMs);
  }

  /** Closes the socket; queries in flight fail. */
  close(): void {
    this.#closed = true;
    this.#sock?.close();
    this.#sock = undefined;
  }

  #udp(query: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new GrpcError(Status.UNAVAILABLE, "the manager is shutting down"));
    const sock = this.#socket();
    let id = randomId();
    for (let i = 0; this.#pending.has(id); i++) {
      if (i > 64) return Promise.reject(new GrpcError(Status.RESOURCE_EXHAUSTED, "too many DNS queries in flight"));
      id = randomId();
    }
    const sent = query.slice();
    sent[0] = id >> 8;
    sent[1] = id & 0xff;
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new GrpcError(Status.UNAVAILABLE, `DNS server ${this.server.host}:${this.server.port} did not answer`));
      }, timeoutMs);
      this.#pending.set(id, {
        query: sent,
        resolve: (answer) => {
          clearTimeout(timer);
          answer[0] = query[0]!;
          answer[1] = query[1]!;
          resolve(answer);
        },
      });
      sock.send(sent, this.server.port, this.server.host, (e) => {
        if (!e) return;
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(new GrpcError(Status.UNAVAILABLE, `DNS over UDP failed: ${e.message}`));
      });
    });
  }

  #socket(): dgram.Socket {
    if (this.#sock) return this.#sock;
    const sock = dgram.createSocket(this.server.host.includes(":") ? "udp6" : "udp4");
    sock.on("message", (msg: Uint8Array, from: { address: string; port: number }) => {
      if (msg.length < DNS_HEADER_LEN || from.port !== this.server.port) return;
      const id = (msg[0]! << 8) | msg[1]!;
      const p = this.#pending.get(id);
      if (!p || !sameQuestion(p.query, msg)) return;
      this.#pending.delete(id);
      p.resolve(new Uint8Array(msg));
    });
    sock.on("error", () => {
      // A failed socket is replaced on the next query; the queries in flight time out.
      if (this.#sock === sock) this.#sock = undefined;
      sock.close();
    });
    sock.unref();
    this.#sock = sock;
    return sock;
  }
}

function randomId(): number {
  return crypto.getRandomValues(new Uint16Array(1))[0]!;
}

/** Whether an answer's question section (QDCOUNT and the bytes after the header) is the query's. */
function sameQuestion(query: Uint8Array, answer: Uint8Array): boolean {
  if (query[4] !== answer[4] || query[5] !== answer[5]) return false;
  // The question section runs to the end of a query without additional records (EDNS comes after it).
  let end = DNS_HEADER_LEN;
  const qd = (query[4]! << 8) | query[5]!;
  for (let q = 0; q < qd; q++) {
    while (end < query.length && query[end] !== 0) {
      if ((query[end]! & 0xc0) !== 0) return false; // no compression in a question we sent
      end += query[end]! + 1;
    }
    end += 5; // the root label, type, class
  }
  if (end > query.length || end > answer.length) return false;
  for (let i = DNS_HEADER_LEN; i < end; i++) {
    // Names compare without regard to case (RFC 4343); 0x20-bit randomisation is undone by some servers.
    const a = query[i]!, b = answer[i]!;
    if (a !== b && (a | 0x20) !== (b | 0x20)) return false;
  }
  return true;
}

function tcpExchange(query: Uint8Array, server: HostPort, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection({ host: server.host, port: server.port });
    const chunks: Uint8Array[] = [];
    let have = 0;
    const done = (err: Error | undefined, answer?: Uint8Array) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(answer!);
    };
    const timer = setTimeout(() => done(new GrpcError(Status.UNAVAILABLE, "DNS over TCP timed out")), timeoutMs);
    sock.on("connect", () => {
      const msg = new Uint8Array(2 + query.length);
      new DataView(msg.buffer).setUint16(0, query.length);
      msg.set(query, 2);
      sock.write(msg);
    });
    sock.on("data", (c: Uint8Array) => {
      chunks.push(c);
      have += c.length;
      const all = concat(chunks, have);
      if (all.length >= 2) {
        const len = new DataView(all.buffer, all.byteOffset).getUint16(0);
        if (all.length >= 2 + len) done(undefined, all.slice(2, 2 + len));
      }
    });
    sock.on("error", (e: Error) => done(new GrpcError(Status.UNAVAILABLE, `DNS over TCP failed: ${e.message}`)));
    sock.on("end", () => done(new GrpcError(Status.UNAVAILABLE, "DNS server closed the TCP connection")));
  });
}

function concat(chunks: Uint8Array[], n: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  chunks.splice(0, chunks.length, out);
  return out;
}
