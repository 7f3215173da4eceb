/**
 * The client end of one Tunnel stream: one workstation connection (TCP) or flow (UDP) carried as payload.
 *
 * Backpressure, both ways, with bounded memory per stream:
 * - inbound (writes): TCP payload is coalesced into frames of up to 64 KiB (small writes made in the same tick share
 *   a frame). `write` returns false once WRITE_HIGH_WATER bytes wait (coalescing buffer + HTTP/2 stream buffer, which
 *   fills when the manager stops granting window); the caller then stops reading its source until `drained()`.
 *   Writing past WRITE_HARD_LIMIT is misuse and throws.
 * - outbound (reads): received payload waits in a queue; above READ_HIGH_WATER the HTTP/2 stream is paused, so no
 *   WINDOW_UPDATE goes out and the manager stops reading its destination socket.
 */
import type { Stream } from "./h2/connection.ts";
import { GrpcError, Status } from "./grpc_web.ts";
import { Call, type Channel } from "./channel.ts";
import {
  decodeTunnelFrame,
  type DialResult,
  encodeDataFrame,
  encodeDataFrameHeader,
  encodeTunnelFrame,
  type Endpoint,
  methods,
  Protocol,
} from "./messages.ts";
import { encodeFrame } from "./grpc_web.ts";

/** Largest payload in one data frame. */
export const MAX_FRAME_PAYLOAD = 64 * 1024;
export const WRITE_HIGH_WATER = 256 * 1024;
export const WRITE_HARD_LIMIT = 4 * 1024 * 1024;
export const READ_HIGH_WATER = 256 * 1024;
/** Largest UDP payload (RFC 768: 16-bit length, minus the 8-byte header). */
export const MAX_DATAGRAM = 65507;

export interface TunnelRequest {
  protocol: "tcp" | "udp";
  source: Endpoint;
  destination: Endpoint;
}

/** Which method carries the stream, and (for a workstation joining an intercepted connection) what it joins. */
export interface TunnelMethod {
  /** "Tunnel" (default), "AgentTunnel", "InterceptTunnel" or "MountTunnel". */
  method?: "Tunnel" | "AgentTunnel" | "InterceptTunnel" | "MountTunnel";
  /** InterceptTunnel, AgentTunnel: the announced connection this stream joins. */
  connectionId?: string;
  /** MountTunnel: the intercept whose volumes to mount. */
  interceptId?: string;
  /** A joining stream's own dial result, sent after the open frame (the peer waits for it). */
  dial?: DialResult;
}

/** The manager (or the destination behind it) reset the stream. Thrown by `read()`. */
export class TunnelResetError extends Error {
  override name = "TunnelResetError";
}

export interface TunnelStats {
  /** Payload bytes written (inbound) and read (outbound) so far. */
  bytesWritten: number;
  bytesRead: number;
  /** Inbound bytes waiting to be sent: coalescing buffer plus the HTTP/2 stream's buffer. */
  writeBuffered: number;
  /** Outbound bytes received and not yet read. */
  readBuffered: number;
}

/** How a stream ended: both FINs (closed), a reset either way, or a gRPC error. */
export interface TunnelEnd {
  how: "closed" | "reset" | "error";
  reason: string;
}

const FIN_FRAME = encodeFrame(encodeTunnelFrame({ kind: "fin" }));
const KEEPALIVE_FRAME = encodeFrame(encodeTunnelFrame({ kind: "keepalive" }));

export class Tunnel {
  /** Set once the manager answered the open frame. Payload flows only when `dial.code === DialCode.ok`. */
  dial: DialResult = { code: 0, message: "" };
  readonly protocol: "tcp" | "udp";
  /** Resolves when the stream has fully ended. */
  readonly ended: Promise<TunnelEnd>;

  readonly #call: Call;
  readonly #stream: Stream;
  #drainWaiters: (() => void)[] = [];
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #flushQueued = false;
  #writeClosed = false;
  #readQueue: Uint8Array[] = [];
  #readQueued = 0;
  #readEof = false;
  #readError: Error | undefined;
  #readWaiter: (() => void) | undefined;
  #paused = false;
  #bytesWritten = 0;
  #bytesRead = 0;
  #dialWaiter: ((d: DialResult | Error) => void) | undefined;
  #end: TunnelEnd | undefined;
  #resolveEnd!: (e: TunnelEnd) => void;

  /** Use `ManagerSession.openTunnel`, `openAgentTunnel` or `joinIntercept`. */
  constructor(channel: Channel, sessionId: string, request: TunnelRequest, how: TunnelMethod = {}) {
    this.protocol = request.protocol;
    this.ended = new Promise((r) => (this.#resolveEnd = r));
    this.#stream = channel.open(methods[how.method ?? "Tunnel"]!.path);
    this.#call = new Call(this.#stream, channel.maxMessageSize);
    this.#call.onMessage = (msg) => this.#onMessage(msg);
    this.#call.onEnd = (s) => this.#onCallEnd(s.code, s.message);
    this.#stream.onDrain = () => this.#wakeDrain();
    this.#stream.write(encodeFrame(encodeTunnelFrame({
      kind: "open",
      open: {
        sessionId,
        protocol: request.protocol === "tcp" ? Protocol.tcp : Protocol.udp,
        source: request.source,
        destination: request.destination,
        connectionId: how.connectionId ?? "",
        interceptId: how.interceptId ?? "",
      },
    })));
    if (how.dial) {
      this.dial = how.dial;
      this.#stream.write(encodeFrame(encodeTunnelFrame({ kind: "dial", dial: how.dial })));
      if (how.dial.code !== 1) this.#readEof = true;
    }
  }

  /** Inbound bytes waiting to be sent (the coalescing buffer and the HTTP/2 stream's). */
  get writeBuffered(): number {
    return this.#writeBuffered();
  }

  /** Whether `write` would throw: this side half-closed, or the stream ended (a reset, or both directions done). */
  get done(): boolean {
    return this.#writeClosed || this.#end !== undefined;
  }

  /** Resolves with the dial result; rejects with a GrpcError when the manager refused the stream itself. */
  opened(): Promise<DialResult> {
    if (this.dial.code !== 0) return Promise.resolve(this.dial);
    if (this.#end) return Promise.reject(new GrpcError(Status.UNAVAILABLE, this.#end.reason));
    return new Promise((resolve, reject) => {
      this.#dialWaiter = (d) => d instanceof Error ? reject(d) : resolve(d);
    });
  }

  /**
   * Sends payload. TCP: any length, coalesced. UDP: one datagram. Returns false when the caller should wait for
   * `drained()` before writing more. `data` is not kept: the caller may reuse it once `write` returns (a packet
   * buffer, say).
   */
  write(data: Uint8Array): boolean {
    if (this.#writeClosed || this.#end) {
      throw new TypeError("Cannot write to a tunnel after closeWrite(), reset() or its end");
    }
    if (data.length === 0) return this.#writable();
    this.#bytesWritten += data.length;
    if (this.protocol === "udp") {
      if (data.length > MAX_DATAGRAM) throw new RangeError(`Datagram of ${data.length} bytes is over ${MAX_DATAGRAM}`);
      this.#stream.write(encodeDataFrame([data], data.length));
      return this.#writable();
    }
    if (this.#writeBuffered() + data.length > WRITE_HARD_LIMIT) {
      throw new RangeError(`Tunnel write buffer over ${WRITE_HARD_LIMIT} bytes: the caller ignored write() === false`);
    }
    // A copy of our own, the only one here: frames reference it (header, then these chunks) and the HTTP/2
    // connection copies it once more, into the bytes it writes.
    this.#pending.push(new Uint8Array(data));
    this.#pendingBytes += data.length;
    // A full frame or more is framed now; less waits to the end of this tick to coalesce with what follows.
    if (this.#pendingBytes >= MAX_FRAME_PAYLOAD) this.#flush();
    if (this.#pendingBytes > 0 && !this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    }
    return this.#writable();
  }

  /** Resolves when writing may go on (or the stream ended). */
  drained(): Promise<void> {
    this.#flush();
    if (this.#writable() || this.#end) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Half-closes: no more payload from this side (TCP FIN; for UDP, ends the flow). */
  closeWrite(): void {
    if (this.#writeClosed || this.#end) return;
    this.#flush();
    this.#writeClosed = true;
    this.#stream.write(FIN_FRAME);
    this.#stream.end();
  }

  /** Aborts both directions (TCP RST at the destination). */
  reset(reason = "reset by the client"): void {
    if (this.#end) return;
    // Both directions already finished (FIN each way): nothing is left to abort, and the manager ends the stream on
    // its own. Not a reset, so no error is made for it (that cost showed per connection in the connection-rate
    // profile, where every closed connection came here).
    if (this.#writeClosed && this.#readEof && !this.#readError) return;
    this.#pending = [];
    this.#pendingBytes = 0;
    if (!this.#writeClosed) {
      this.#writeClosed = true;
      this.#stream.write(encodeFrame(encodeTunnelFrame({ kind: "reset", reason })));
      this.#stream.end();
    }
    if (!this.#readEof && !this.#readError) this.#failRead(new TunnelResetError(reason));
    this.#end = { how: "reset", reason };
  }

  /** Tells the manager the stream is alive while idle. */
  keepalive(): void {
    if (!this.#writeClosed && !this.#end) this.#stream.write(KEEPALIVE_FRAME);
  }

  /**
   * The next payload: a slice of the TCP byte stream or one UDP datagram; null after the manager's FIN. Throws
   * TunnelResetError after a reset.
   */
  async read(): Promise<Uint8Array | null> {
    for (;;) {
      const c = this.#readQueue.shift();
      if (c) {
        this.#readQueued -= c.length;
        if (this.#paused && this.#readQueued <= READ_HIGH_WATER / 2) {
          this.#paused = false;
          this.#stream.resume();
        }
        return c;
      }
      if (this.#readError) throw this.#readError;
      if (this.#readEof) return null;
      await new Promise<void>((r) => (this.#readWaiter = r));
    }
  }

  /** Whether `read()` would return null now: the manager's FIN came and every payload before it was read. */
  get atEnd(): boolean {
    return this.#readEof && this.#readQueue.length === 0 && this.#readError === undefined;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    for (let c = await this.read(); c; c = await this.read()) yield c;
  }

  stats(): TunnelStats {
    return {
      bytesWritten: this.#bytesWritten,
      bytesRead: this.#bytesRead,
      writeBuffered: this.#writeBuffered(),
      readBuffered: this.#readQueued + this.#call.queuedBytes,
    };
  }

  #writeBuffered(): number {
    return this.#pendingBytes + this.#stream.bufferedAmount;
  }

  #writable(): boolean {
    return this.#writeBuffered() < WRITE_HIGH_WATER;
  }

  #wakeDrain(): void {
    if (!this.#writable() && !this.#end) return;
    for (const w of this.#drainWaiters.splice(0)) w();
  }

  #flush(): void {
    this.#flushQueued = false;
    if (this.#pendingBytes === 0 || this.#end) return;
    // Cut the pending chunks into frames of at most MAX_FRAME_PAYLOAD: each a header, then the chunks themselves.
    let chunks: Uint8Array[] = [];
    let n = 0;
    const emit = () => {
      this.#stream.write(encodeDataFrameHeader(n));
      for (const c of chunks) this.#stream.write(c);
      chunks = [];
      n = 0;
    };
    for (let c of this.#pending) {
      while (c.length > 0) {
        const k = Math.min(c.length, MAX_FRAME_PAYLOAD - n);
        chunks.push(k === c.length ? c : c.subarray(0, k));
        n += k;
        c = c.subarray(k);
        if (n === MAX_FRAME_PAYLOAD) emit();
      }
    }
    if (n > 0) emit();
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  #onMessage(msg: Uint8Array): void {
    let frame;
    try {
      frame = decodeTunnelFrame(msg);
    } catch (e) {
      this.#failRead(e as Error);
      this.#call.cancel();
      return;
    }
    switch (frame.kind) {
      case "data":
        if (this.#readError) break;
        this.#bytesRead += frame.data.length;
        this.#readQueue.push(frame.data);
        this.#readQueued += frame.data.length;
        if (!this.#paused && this.#readQueued > READ_HIGH_WATER) {
          this.#paused = true;
          this.#stream.pause();
        }
        break;
      case "dial":
        this.dial = frame.dial;
        this.#dialWaiter?.(frame.dial);
        this.#dialWaiter = undefined;
        if (frame.dial.code !== 1) this.#readEof = true;
        break;
      case "fin":
        this.#readEof = true;
        break;
      case "reset":
        this.#pending = [];
        this.#pendingBytes = 0;
        this.#writeClosed = true;
        this.#readQueue = [];
        this.#readQueued = 0;
        this.#failRead(new TunnelResetError(frame.reason || "reset by the manager"));
        this.#end ??= { how: "reset", reason: frame.reason };
        break;
      case "keepalive":
        break;
      default:
        this.#failRead(new GrpcError(Status.INTERNAL, `Unexpected "${frame.kind}" frame from the manager`));
    }
    this.#wakeReader();
  }

  /** Ends reading with an error (unless it already ended); queued payload is dropped, as a TCP RST drops it. */
  #failRead(e: Error): void {
    if (this.#readEof || this.#readError) return;
    this.#readError = e;
    this.#readQueue = [];
    this.#readQueued = 0;
    this.#wakeReader();
  }

  /** The HTTP/2 call ended: settle everything still waiting. */
  #onCallEnd(code: Status, message: string): void {
    const end: TunnelEnd = this.#end ??
      (code === Status.OK
        ? { how: "closed", reason: message }
        : { how: "error", reason: new GrpcError(code, message).message });
    this.#end = end;
    this.#writeClosed = true;
    if (code !== Status.OK) this.#failRead(new GrpcError(code, message));
    this.#readEof = true;
    if (this.#dialWaiter) {
      this.#dialWaiter(
        new GrpcError(code === Status.OK ? Status.INTERNAL : code, message || "Stream ended before a dial result"),
      );
      this.#dialWaiter = undefined;
    }
    this.#wakeReader();
    this.#wakeDrain();
    this.#resolveEnd(end);
  }

  #wakeReader(): void {
    const w = this.#readWaiter;
    this.#readWaiter = undefined;
    w?.();
  }
}
