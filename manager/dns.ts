/**
 * Raw DNS forwarding: the client's DNS message goes to the cluster DNS server unchanged, and its reply comes back
 * unchanged (same id, flags, rcode and records) but for TTLs over MAX_TTL_S, lowered to it. UDP first; a truncated reply (TC bit, RFC 1035 section 4.1.1) is
 * asked again over TCP with the 2-byte length prefix of RFC 1035 section 4.2.2.
 */
import dgram from "node:dgram";
import net from "node:net";
import { GrpcError, Status } from "../proto/grpc_web.ts";
import ipaddr from "ipaddr.js";
import type { HostPort } from "./config.ts";
import { capTtls, DNS_HEADER_LEN, questionEnd, sameQuestion } from "./dns_message.ts";

/**
 * The most a forwarded answer may tell the workstation to cache a record for: a forged answer that got through
 * would sit in its cache no longer than this. CoreDNS's kubernetes plugin answers with 5 s.
 */
export const MAX_TTL_S = 300;
/** Queries sent from one UDP socket before the next ones go out from a new one (a new random source port). */
const QUERIES_PER_SOCKET = 100;

interface Pending {
  query: Uint8Array;
  sock: dgram.Socket;
  resolve: (a: Uint8Array) => void;
}

/**
 * Forwards raw DNS queries to one server the way dnsmasq and CoreDNS's forward plugin do: each query goes out under
 * an id of our own, random and unique among those in flight, and its answer comes back with the client's id
 * restored. Queries share a UDP socket (a socket per query cost a socket, a bind and a close per lookup, most of an
 * uncached lookup's time on the manager), and every 100 queries the next ones move to a new socket, so the source
 * port changes too (RFC 5452 section 9.2); an old socket closes once its queries are answered or timed out.
 *
 * An answer is taken only from the server's address and port, on the socket its query left from, for an id in
 * flight, asking exactly the query's question (RFC 5452 section 9.1's checks: names without regard to case, type
 * and class byte for byte); anything else is counted in `ignored` and dropped. TTLs over MAX_TTL_S are lowered to
 * it. A truncated answer (TC) is asked again over TCP, with the same checks.
 */
export class DnsForwarder {
  #sock: dgram.Socket | undefined;
  #sentOnSocket = 0;
  readonly #pending = new Map<number, Pending>();
  /** Queries in flight per socket, so that a rotated-out socket closes when its last one settles. */
  readonly #perSocket = new Map<dgram.Socket, number>();
  readonly #serverAddress: string;
  #closed = false;
  /** Answers dropped: from another address or port, for no query in flight, or not asking its question. */
  ignored = 0;

  constructor(readonly server: HostPort, readonly maxTtl = MAX_TTL_S) {
    this.#serverAddress = canonical(server.host);
  }

  /** Queries in flight. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** UDP sockets open (the current one, and rotated-out ones with queries still in flight). */
  get sockets(): number {
    return this.#perSocket.size + (this.#sock && !this.#perSocket.has(this.#sock) ? 1 : 0);
  }

  async forward(query: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (query.length < DNS_HEADER_LEN) {
      throw new GrpcError(Status.INVALID_ARGUMENT, `DNS query of ${query.length} bytes is shorter than a header`);
    }
    if ((query[2]! & 0x80) !== 0) {
      throw new GrpcError(Status.INVALID_ARGUMENT, "DNS message is a response, not a query");
    }
    if (questionEnd(query) === null) throw new GrpcError(Status.INVALID_ARGUMENT, "Malformed DNS query");
    const answer = await this.#udp(query, timeoutMs);
    if ((answer[2]! & 0x02) === 0) return answer;
    const tcp = await tcpExchange(query, this.server, timeoutMs);
    if (tcp[0] !== query[0] || tcp[1] !== query[1] || !sameQuestion(query, tcp) || capTtls(tcp, this.maxTtl) === null) {
      throw new GrpcError(Status.UNAVAILABLE, "DNS server's TCP answer does not match the query");
    }
    return tcp;
  }

  /** Closes the sockets; queries in flight fail. */
  close(): void {
    this.#closed = true;
    const all = new Set(this.#perSocket.keys());
    if (this.#sock) all.add(this.#sock);
    for (const s of all) s.close();
    this.#sock = undefined;
    this.#perSocket.clear();
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
    this.#perSocket.set(sock, (this.#perSocket.get(sock) ?? 0) + 1);
    return new Promise<Uint8Array>((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        this.#pending.delete(id);
        this.#release(sock);
      };
      const timer = setTimeout(() => {
        settle();
        reject(new GrpcError(Status.UNAVAILABLE, `DNS server ${this.server.host}:${this.server.port} did not answer`));
      }, timeoutMs);
      this.#pending.set(id, {
        query: sent,
        sock,
        resolve: (answer) => {
          settle();
          answer[0] = query[0]!;
          answer[1] = query[1]!;
          resolve(answer);
        },
      });
      sock.send(sent, this.server.port, this.server.host, (e) => {
        if (!e) return;
        settle();
        reject(new GrpcError(Status.UNAVAILABLE, `DNS over UDP failed: ${e.message}`));
      });
    });
  }

  /** One query on `sock` settled: a socket no longer current closes with its last one. */
  #release(sock: dgram.Socket): void {
    const left = (this.#perSocket.get(sock) ?? 1) - 1;
    if (left > 0) return void this.#perSocket.set(sock, left);
    this.#perSocket.delete(sock);
    if (sock !== this.#sock) sock.close();
  }

  #socket(): dgram.Socket {
    if (this.#sock && this.#sentOnSocket < QUERIES_PER_SOCKET) {
      this.#sentOnSocket++;
      return this.#sock;
    }
    const old = this.#sock;
    if (old && !this.#perSocket.has(old)) old.close();
    const sock = dgram.createSocket(this.server.host.includes(":") ? "udp6" : "udp4");
    sock.on("message", (msg: Uint8Array, from: { address: string; port: number }) => this.#answer(sock, msg, from));
    sock.on("error", () => {
      // A failed socket is replaced on the next query; the queries in flight time out.
      if (this.#sock === sock) this.#sock = undefined;
      sock.close();
    });
    sock.unref();
    this.#sock = sock;
    this.#sentOnSocket = 1;
    return sock;
  }

  #answer(sock: dgram.Socket, msg: Uint8Array, from: { address: string; port: number }): void {
    const p = msg.length >= DNS_HEADER_LEN ? this.#pending.get((msg[0]! << 8) | msg[1]!) : undefined;
    if (
      !p || p.sock !== sock || from.port !== this.server.port || canonical(from.address) !== this.#serverAddress ||
      !sameQuestion(p.query, msg)
    ) {
      this.ignored++;
      return;
    }
    const answer = new Uint8Array(msg);
    if (capTtls(answer, this.maxTtl) === null) {
      this.ignored++; // malformed: the real answer may still come
      return;
    }
    p.resolve(answer);
  }
}

function randomId(): number {
  return crypto.getRandomValues(new Uint16Array(1))[0]!;
}

/** An IP address in one spelling (IPv4-mapped IPv6 as IPv4), or the string itself when it is no address. */
function canonical(host: string): string {
  try {
    return ipaddr.process(host).toString();
  } catch {
    return host;
  }
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
