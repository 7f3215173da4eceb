/**
 * Byte transports under an HTTP/2 connection: a Deno connection (TCP or TLS; also one still being dialled, so a
 * client is usable at once and its first frames wait for the dial), and a node Duplex (a Kubernetes port-forward
 * stream). Each feeds what it reads to `Connection.receive`, writes what the connection hands it in order, and
 * reports its end with `Connection.transportClosed`.
 */
import type { Duplex } from "node:stream";
import { type Connection, type Transport } from "./connection.ts";
import { errorMessage } from "../../base/error_message.ts";
import { concat } from "../../base/bytes.ts";

const READ_BUFFER = 256 * 1024;
/** How long a closing connection may take to write what it still holds. */
const CLOSE_GRACE_MS = 2_000;

/** A transport that feeds a connection once `run` is called (what a channel's factory may return). */
export interface RunnableTransport extends Transport {
  run(h2: Connection): void | Promise<void>;
}

/** A Deno.Conn (or the promise of one) as a transport. Call `run(connection)` once to start reading. */
export class ConnTransport implements RunnableTransport {
  #conn: Deno.Conn | undefined;
  #queue: Uint8Array[] = [];
  #buffered = 0;
  #writing = false;
  #closing = false;
  #closed = false;
  #h2: Connection | undefined;

  constructor(readonly dial: Deno.Conn | Promise<Deno.Conn>) {}

  get buffered(): number {
    return this.#buffered;
  }

  write(bytes: Uint8Array): void {
    if (this.#closing || this.#closed) return;
    this.#queue.push(bytes);
    this.#buffered += bytes.length;
    if (this.#conn && !this.#writing) void this.#pump();
  }

  /** Closes once what was written went out, or after a grace period when the peer does not take it. */
  close(): void {
    this.#closing = true;
    if (this.#conn && !this.#writing) return this.#shut();
    const t = setTimeout(() => this.#shut(), CLOSE_GRACE_MS);
    Deno.unrefTimer(t);
  }

  /** Dials (when given a promise), then reads into `h2` until EOF or an error; ends `h2`'s connection then. */
  async run(h2: Connection): Promise<void> {
    this.#h2 = h2;
    let reason = "connection closed by the peer";
    try {
      const conn = await this.dial;
      this.#conn = conn;
      if (this.#closing && this.#queue.length === 0) return this.#shut();
      try {
        (conn as Deno.TcpConn).setNoDelay?.(true);
      } catch {
        // not a TCP connection
      }
      if (this.#queue.length > 0) void this.#pump();
      const buf = new Uint8Array(READ_BUFFER);
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        h2.receive(buf.subarray(0, n));
      }
    } catch (e) {
      reason = errorMessage(e);
    }
    h2.transportClosed(reason);
    this.#shut();
  }

  async #pump(): Promise<void> {
    this.#writing = true;
    const conn = this.#conn!;
    try {
      while (this.#queue.length > 0) {
        const chunk = this.#queue.length === 1 ? this.#queue[0]! : concat(this.#queue);
        this.#queue = [];
        let off = 0;
        while (off < chunk.length) off += await conn.write(chunk.subarray(off));
        this.#buffered -= chunk.length;
      }
    } catch (e) {
      this.#queue = [];
      this.#buffered = 0;
      this.#writing = false;
      this.#h2?.transportClosed(errorMessage(e));
      this.#shut();
      return;
    }
    this.#writing = false;
    if (this.#closing) this.#shut();
    else this.#h2?.transportDrained();
  }

  #shut(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn?.close();
    } catch {
      // already closed
    }
  }
}

/** A node Duplex as a transport (its own buffering; `drain` resumes framing). */
export class DuplexTransport implements RunnableTransport {
  constructor(readonly duplex: Duplex) {}

  get buffered(): number {
    return this.duplex.writableLength;
  }

  write(bytes: Uint8Array): void {
    if (!this.duplex.destroyed && !this.duplex.writableEnded) this.duplex.write(bytes);
  }

  close(): void {
    if (!this.duplex.destroyed) this.duplex.end();
    // A peer that never closes its side must not keep the duplex: destroyed after a grace period.
    const t = setTimeout(() => this.duplex.destroy(), 1000);
    this.duplex.once("close", () => clearTimeout(t));
  }

  /** Starts feeding `h2` from the duplex. */
  run(h2: Connection): void {
    this.duplex.on("data", (b: Uint8Array) => h2.receive(b));
    this.duplex.on("drain", () => h2.transportDrained());
    endWith(h2, this.duplex, "connection closed by the peer");
  }
}

/** Ends `h2`'s connection once, at the first of a node stream's "end", "error" or "close" (saying `closed`). */
export function endWith(
  h2: Connection,
  stream: { on(event: "end" | "close", f: () => void): unknown; on(event: "error", f: (e: Error) => void): unknown },
  closed: string,
): void {
  let ended = false;
  const end = (reason: string) => {
    if (ended) return;
    ended = true;
    h2.transportClosed(reason);
  };
  stream.on("end", () => end(closed));
  stream.on("error", (e: Error) => end(e.message));
  stream.on("close", () => end(closed));
}
