/**
 * The client half of WebSocket (RFC 6455), just what the API server's port-forward needs: the opening handshake over
 * a TLS socket we own (so client certificates, a kubeconfig's CA and insecure-skip-tls-verify apply, and a refused
 * upgrade's Status body can be read for the error message), and the frame codec.
 */
import { Buffer } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";
import tls from "node:tls";
import type { KubeTls } from "./kubeconfig.ts";

/** RFC 6455 section 1.3: the GUID appended to Sec-WebSocket-Key. */
const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** RFC 6455 section 5.2 opcodes. */
export const Opcode = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

/** The upgrade was answered with something other than 101: the status and the body (a Kubernetes Status). */
export class UpgradeRefusedError extends Error {
  override name = "UpgradeRefusedError";
  constructor(readonly status: number, readonly body: string) {
    super(`the server refused the WebSocket upgrade: HTTP ${status} ${body.slice(0, 200)}`);
  }
}

export interface WebSocketConnection {
  socket: tls.TLSSocket;
  protocol: string;
  /** Bytes that followed the 101 answer: the first frames. */
  head: Buffer;
}

/** Opens a TLS connection and does the WebSocket opening handshake for `path` with `protocols`. */
export function connectWebSocket(
  t: KubeTls,
  path: string,
  protocols: string[],
  o: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined } = {},
): Promise<WebSocketConnection> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: t.host,
      port: t.port,
      ...(t.ca ? { ca: t.ca } : {}),
      ...(t.cert ? { cert: t.cert } : {}),
      ...(t.key ? { key: t.key } : {}),
      rejectUnauthorized: t.rejectUnauthorized,
      servername: t.servername ?? (/^[\d.]+$|:/.test(t.host) ? undefined : t.host),
      ALPNProtocols: ["http/1.1"],
    } as tls.ConnectionOptions);
    const key = randomBytes(16).toString("base64");
    let buf = Buffer.alloc(0);
    let done = false;
    const timer = setTimeout(
      () => fail(new Error(`no answer within ${o.timeoutMs ?? 15_000} ms`)),
      o.timeoutMs ?? 15_000,
    );
    const onAbort = () => fail(o.signal?.reason ?? new Error("aborted"));
    o.signal?.addEventListener("abort", onAbort, { once: true });
    const finish = () => {
      done = true;
      clearTimeout(timer);
      o.signal?.removeEventListener("abort", onAbort);
      socket.off("data", onData);
      socket.off("error", fail);
      socket.off("close", onClose);
    };
    function fail(e: unknown) {
      if (done) return;
      finish();
      socket.destroy();
      reject(e);
    }
    const onClose = () => {
      if (done) return;
      // A refused upgrade may end with the body before the connection closes.
      const status = parseStatusLine(buf);
      if (status !== undefined && status !== 101) {
        const end = buf.indexOf("\r\n\r\n");
        return fail(new UpgradeRefusedError(status, end >= 0 ? buf.subarray(end + 4).toString("utf8") : ""));
      }
      fail(new Error("the connection closed during the WebSocket handshake"));
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) {
        if (buf.length > 64 * 1024) fail(new Error("the WebSocket handshake answer is too long"));
        return;
      }
      const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
      const status = parseStatusLine(buf)!;
      const headers = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
      }
      if (status !== 101) {
        const len = Number(headers.get("content-length") ?? NaN);
        const body = buf.subarray(end + 4);
        if (Number.isFinite(len) && body.length < len) return; // wait for the whole Status
        return fail(new UpgradeRefusedError(status, body.toString("utf8")));
      }
      const accept = createHash("sha1").update(key + WS_GUID).digest("base64");
      if (headers.get("sec-websocket-accept") !== accept) {
        return fail(new Error("the server's Sec-WebSocket-Accept does not match the key (not a WebSocket server?)"));
      }
      const protocol = headers.get("sec-websocket-protocol") ?? "";
      if (!protocols.includes(protocol)) {
        return fail(
          new Error(`the server chose WebSocket subprotocol "${protocol}", not one of ${protocols.join(", ")}`),
        );
      }
      finish();
      resolve({ socket, protocol, head: buf.subarray(end + 4) });
    };
    socket.on("data", onData);
    socket.on("error", fail);
    socket.on("close", onClose);
    socket.once("secureConnect", () => {
      socket.setNoDelay(true);
      const hostHeader = t.host.includes(":") ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
      const lines = [
        `GET ${path} HTTP/1.1`,
        `Host: ${hostHeader}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        `Sec-WebSocket-Key: ${key}`,
        "Sec-WebSocket-Version: 13",
        `Sec-WebSocket-Protocol: ${protocols.join(", ")}`,
        "User-Agent: tp",
        ...Object.entries(t.headers).map(([k, v]) => `${k}: ${v}`),
      ];
      socket.write(lines.join("\r\n") + "\r\n\r\n");
    });
  });
}

function parseStatusLine(buf: Buffer): number | undefined {
  const eol = buf.indexOf("\r\n");
  const m = buf.subarray(0, eol < 0 ? Math.min(buf.length, 64) : eol).toString("latin1").match(
    /^HTTP\/1\.[01] (\d{3})/,
  );
  return m ? Number(m[1]) : undefined;
}

/** One complete message (fragments joined) or control frame. */
export interface Frame {
  opcode: number;
  payload: Buffer;
}

/** Incremental frame decoder for frames from a server (which are never masked, RFC 6455 section 5.1). */
export class FrameDecoder {
  // Received bytes not yet decoded, as the chunks they came in: a big frame is joined once, when it is complete,
  // not re-copied on every TLS record.
  #chunks: Buffer[] = [];
  #len = 0;
  #fragments: Buffer[] = [];
  /** Bytes in #fragments: a message is bounded by maxMessage as a whole, not only frame by frame. */
  #fragBytes = 0;
  #fragOpcode = 0;
  /** Largest message accepted; a bigger one is a protocol error. */
  constructor(readonly maxMessage = 64 * 1024 * 1024) {}

  /** Bytes held: received and not yet decoded, and the fragments of a message not yet finished. */
  get buffered(): number {
    return this.#len + this.#fragBytes;
  }

  /** The first `n` bytes (n <= #len), contiguous; copies only when they span chunks. */
  #peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const parts: Buffer[] = [];
    let have = 0;
    for (const c of this.#chunks) {
      parts.push(c);
      have += c.length;
      if (have >= n) break;
    }
    return Buffer.concat(parts, have).subarray(0, n);
  }

  /** Removes and returns the first `n` bytes, contiguous. */
  #take(n: number): Buffer {
    const first = this.#chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.#chunks[0]!;
        const k = Math.min(c.length, n - off);
        c.copy(out, off, 0, k);
        off += k;
        if (k === c.length) this.#chunks.shift();
        else this.#chunks[0] = c.subarray(k);
      }
    }
    this.#len -= n;
    return out;
  }

  /** Feeds bytes; returns the messages and control frames they complete. Throws RangeError on a protocol error. */
  push(chunk: Buffer): Frame[] {
    if (chunk.length) {
      this.#chunks.push(chunk);
      this.#len += chunk.length;
    }
    const out: Frame[] = [];
    while (this.#len >= 2) {
      const b = this.#peek(Math.min(this.#len, 14));
      const fin = (b[0]! & 0x80) !== 0;
      const opcode = b[0]! & 0x0f;
      const masked = (b[1]! & 0x80) !== 0;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) break;
        const hi = b.readUInt32BE(2);
        if (hi !== 0) throw new RangeError("A WebSocket frame longer than 4 GiB");
        len = b.readUInt32BE(6);
        off = 10;
      }
      if (len > this.maxMessage) throw new RangeError(`A WebSocket frame of ${len} bytes is over the limit`);
      const maskOff = off;
      if (masked) off += 4;
      if (this.#len < off + len) break;
      const frame = this.#take(off + len);
      const payload = frame.subarray(off);
      if (masked) unmask(payload, frame.subarray(maskOff, maskOff + 4));
      if (opcode >= 0x8) {
        out.push({ opcode, payload });
        continue;
      }
      if (opcode !== Opcode.continuation) this.#fragOpcode = opcode;
      if (fin && this.#fragments.length === 0) {
        out.push({ opcode, payload });
      } else {
        this.#fragBytes += payload.length;
        if (this.#fragBytes > this.maxMessage) {
          throw new RangeError(`A fragmented WebSocket message of over ${this.maxMessage} bytes`);
        }
        this.#fragments.push(payload);
        if (fin) {
          out.push({ opcode: this.#fragOpcode, payload: Buffer.concat(this.#fragments) });
          this.#fragments = [];
          this.#fragBytes = 0;
        }
      }
    }
    return out;
  }
}

/** XORs `p` with the 4-byte `mask` (RFC 6455 section 5.3), 32 bits at a time from the first aligned byte. */
export function unmask(p: Uint8Array, mask: Uint8Array): void {
  const head = Math.min(p.length, (4 - (p.byteOffset & 3)) & 3);
  for (let i = 0; i < head; i++) p[i]! ^= mask[i & 3]!;
  const words = (p.length - head) >>> 2;
  if (words > 0) {
    // The mask as a little-endian word, rotated to start where the aligned part starts (x86-64 and aarch64 are LE).
    const m = (k: number) => mask[(head + k) & 3]!;
    const m32 = (m(0) | (m(1) << 8) | (m(2) << 16) | (m(3) << 24)) >>> 0;
    const view = new Uint32Array(p.buffer, p.byteOffset + head, words);
    for (let i = 0; i < words; i++) view[i]! ^= m32;
  }
  for (let i = head + words * 4; i < p.length; i++) p[i]! ^= mask[i & 3]!;
}

/**
 * Encodes one masked client frame (FIN set) whose payload is `prefix` followed by `parts`, copying once. Masking is
 * XOR with a random 4-byte key (RFC 6455 section 5.3), done 32 bits at a time.
 */
export function encodeFrame(opcode: number, prefix: Uint8Array, parts: readonly Uint8Array[]): Buffer {
  let len = prefix.length;
  for (const p of parts) len += p.length;
  const headLen = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const total = headLen + 4 + len;
  // Place the payload on a 4-byte boundary so the mask can be applied 32 bits at a time.
  const raw = Buffer.allocUnsafeSlow(total + 3);
  const pad = (4 - ((raw.byteOffset + headLen + 4) % 4)) % 4;
  const frame = raw.subarray(pad, pad + total);
  frame[0] = 0x80 | opcode;
  if (len < 126) frame[1] = 0x80 | len;
  else if (len < 65536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(0, 2);
    frame.writeUInt32BE(len, 6);
  }
  const mask = randomBytes(4);
  mask.copy(frame, headLen);
  let off = headLen + 4;
  frame.set(prefix, off);
  off += prefix.length;
  for (const p of parts) {
    frame.set(p, off);
    off += p.length;
  }
  const start = headLen + 4;
  const words = len >>> 2;
  const m32 = new Uint32Array(new Uint8Array(mask).buffer)[0]!;
  const view = new Uint32Array(frame.buffer, frame.byteOffset + start, words);
  for (let i = 0; i < words; i++) view[i]! ^= m32;
  for (let i = words * 4; i < len; i++) frame[start + i]! ^= mask[i & 3]!;
  return frame;
}
