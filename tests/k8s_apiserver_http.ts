/**
 * The API server double's HTTP/1.1, on a TLS socket: who the client is (a client certificate the test CA signed, or a
 * bearer token), requests read one at a time off the socket (an `Upgrade` hands the socket over), and the bytes of a
 * JSON answer and of a chunked (watch) answer. It knows nothing of Kubernetes resources.
 */
import { Buffer } from "node:buffer";
import { X509Certificate } from "node:crypto";
import type net from "node:net";
import type tls from "node:tls";

/** An authenticated user. */
export interface Identity {
  user: string;
  groups: string[];
}

const STATUS_TEXT: Record<number, string> = {
  200: "OK",
  201: "Created",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  415: "Unsupported Media Type",
  422: "Unprocessable Entity",
  500: "Internal Server Error",
};

/** The user (CN) and groups (O) of the socket's client certificate, when `ca` issued and signed it. */
export function certIdentity(socket: tls.TLSSocket, ca: X509Certificate): Identity | undefined {
  try {
    const peer = socket.getPeerCertificate(true) as { raw?: Buffer };
    if (peer?.raw) {
      const cert = new X509Certificate(peer.raw);
      if (cert.checkIssued(ca) && cert.verify(ca.publicKey)) {
        const subject = cert.subject.split("\n");
        return {
          user: subject.find((l) => l.startsWith("CN="))?.slice(3) ?? "",
          groups: subject.filter((l) => l.startsWith("O=")).map((l) => l.slice(2)),
        };
      }
    }
  } catch { /* no client certificate */ }
  return undefined;
}

/** Who sent a request: a bearer token's user (`tokens`: token -> user), else the client certificate's identity. */
export function authenticate(
  headers: Record<string, string>,
  tokens: Record<string, string> | undefined,
  identity: Identity | undefined,
): Identity | undefined {
  const auth = headers["authorization"] ?? "";
  if (auth.startsWith("Bearer ")) {
    const user = tokens?.[auth.slice(7)];
    return user === undefined ? undefined : { user, groups: ["system:authenticated"] };
  }
  return identity;
}

/** What to do with each request read off a socket. */
export interface RequestHandlers {
  /** A request with its body; the next is read when the promise settles. */
  request(method: string, target: string, headers: Record<string, string>, body: string): Promise<void>;
  /** A WebSocket or SPDY upgrade: the socket is the handler's from now on, `head` the bytes already read past it. */
  upgrade(method: string, target: string, headers: Record<string, string>, head: Buffer): void;
}

/** Reads HTTP/1.1 requests (Content-Length bodies) off `socket`, one at a time, until one asks for an upgrade. */
export function readRequests(socket: net.Socket, handlers: RequestHandlers): void {
  let buf = Buffer.alloc(0);
  let busy = false;
  const onData = (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    pump();
  };
  const pump = () => {
    while (!busy) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString("latin1").split("\r\n");
      const [method = "", target = ""] = (head[0] ?? "").split(" ");
      const headers: Record<string, string> = {};
      for (const line of head.slice(1)) {
        const i = line.indexOf(":");
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      const len = Number(headers["content-length"] ?? 0);
      if (buf.length < end + 4 + len) return;
      const body = buf.subarray(end + 4, end + 4 + len).toString("utf8");
      buf = buf.subarray(end + 4 + len);
      const upgrade = (headers["upgrade"] ?? "").toLowerCase();
      if (upgrade === "websocket" || upgrade === "spdy/3.1") {
        socket.off("data", onData);
        handlers.upgrade(method, target, headers, buf);
        return;
      }
      busy = true;
      handlers.request(method, target, headers, body).finally(() => {
        busy = false;
        pump();
      });
    }
  };
  socket.on("data", onData);
}

/** A whole JSON answer: status line, Content-Type and Content-Length, one more header line (`header`), the body. */
export function jsonResponse(code: number, value: unknown, header: string): string {
  const text = JSON.stringify(value);
  return `HTTP/1.1 ${code} ${STATUS_TEXT[code] ?? "Status"}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(text)}\r\n${header}\r\n\r\n${text}`;
}

/** Starts a chunked 200 JSON answer (a watch) on `socket`; returns the function that writes one chunk. */
export function startChunked(socket: net.Socket): (s: string) => void {
  socket.write(
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nCache-Control: no-cache, private\r\n\r\n",
  );
  return (s: string) => socket.write(`${Buffer.byteLength(s).toString(16)}\r\n${s}\r\n`);
}
