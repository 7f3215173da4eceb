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

export async function forwardDns(query: Uint8Array, server: HostPort, timeoutMs: number): Promise<Uint8Array> {
  if (query.length < DNS_HEADER_LEN) {
    throw new GrpcError(Status.INVALID_ARGUMENT, `DNS query of ${query.length} bytes is shorter than a header`);
  }
  if ((query[2]! & 0x80) !== 0) throw new GrpcError(Status.INVALID_ARGUMENT, "DNS message is a response, not a query");
  const answer = await udpExchange(query, server, timeoutMs);
  if ((answer[2]! & 0x02) === 0) return answer;
  return await tcpExchange(query, server, timeoutMs);
}

function udpExchange(query: Uint8Array, server: HostPort, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(server.host.includes(":") ? "udp6" : "udp4");
    const done = (err: Error | undefined, answer?: Uint8Array) => {
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(answer!);
    };
    const timer = setTimeout(
      () => done(new GrpcError(Status.UNAVAILABLE, `DNS server ${server.host}:${server.port} did not answer`)),
      timeoutMs,
    );
    sock.on("message", (msg: Uint8Array) => {
      // Only the reply to this query (same id) counts; anything else is ignored.
      if (msg.length >= DNS_HEADER_LEN && msg[0] === query[0] && msg[1] === query[1]) done(undefined, msg);
    });
    sock.on("error", (e: Error) => done(new GrpcError(Status.UNAVAILABLE, `DNS over UDP failed: ${e.message}`)));
    sock.send(query, server.port, server.host);
  });
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
