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
 *
 * Resumable (TCP on the Tunnel method, when asked and the manager agrees: its dial result names the stream): the
 * payload sent is kept until the manager acknowledges it, at most RETAIN_LIMIT bytes (then `write` says false), and
 * what arrives is acknowledged every ACK_EVERY bytes; acks travel apart from the data, on the session's TunnelAcks
 * stream (`session.ts`), so that none waits behind data that flow control holds up. When the connection breaks the
 * tunnel is suspended, not ended: reads wait, writes queue (and soon say false), until `resume()` rejoins the stream
 * on a new connection (each side then sends again what the other has not received) or `reset()` ends it.
 */
import type { Stream } from "./h2/connection.ts";
import { GrpcError, Status } from "./grpc_web.ts";
import { Call, type Channel } from "./channel.ts";
import {
  DATA_HEADROOM,
  decodeTunnelFrame,
  DialCode,
  type DialResult,
  encodeDataFrameHeader,
  encodeTunnelFrame,
  type Endpoint,
  methods,
  Protocol,
  writeDataFrameHeader,
} from "./messages.ts";
import { encodeFrame } from "./grpc_web.ts";

/** Largest payload in one data frame. */
export const MAX_FRAME_PAYLOAD = 64 * 1024;
export const WRITE_HIGH_WATER = 256 * 1024;
export const WRITE_HARD_LIMIT = 4 * 1024 * 1024;
export const READ_HIGH_WATER = 256 * 1024;
/** A resumable tunnel keeps at most this much unacknowledged payload; `write` says false beyond it. */
export const RETAIN_LIMIT = 4 << 20;
/** A resumable tunnel acknowledges what it received every this many bytes. */
export const ACK_EVERY = 128 * 1024;
/** Largest UDP payload (RFC 768: 16-bit length, minus the 8-byte header). */
export const MAX_DATAGRAM = 65507;
/** UDP: the datagrams written in one tick are framed into one buffer of up to this many bytes (more start another). */
const UDP_BATCH_BYTES = 64 * 1024;

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
  /** Ask for a resumable stream (Tunnel, InterceptTunnel and MountTunnel methods, TCP; the manager decides). */
  resumable?: boolean;
}

/**
 * The manager (or the destination behind it) reset the stream. Thrown by `read()`. `code` says why, for programs
 * (manager.proto TunnelReset): REFUSED when the destination refused after the dial; UNSPECIFIED for a plain reset.
 */
export class TunnelResetError extends Error {
  override name = "TunnelResetError";
  constructor(reason: string, readonly code: DialCode = DialCode.unspecified) {
    super(reason);
  }
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

  #call: Call;
  /** The HTTP/2 stream that carries the tunnel now; undefined while suspended. */
  #stream: Stream | undefined;
  #channel: Channel;
  #sessionId: string;
  readonly #request: TunnelRequest;
  readonly #how: TunnelMethod;
  /** Resumable: the manager's name for the stream (from the dial result); "" when not resumable. */
  #streamId = "";
  /** Sent payload the manager has not acknowledged: bytes [#unackedBase, #unackedBase + #unackedBytes). */
  #unacked: Uint8Array[] = [];
  #unackedBytes = 0;
  #unackedBase = 0;
  /** Received payload acknowledged to the manager so far. */
  #ackedToPeer = 0;
  /** The connection broke: waiting for `resume()` or `reset()`. */
  #suspended = false;
  /** A reset made while suspended, which the manager has not heard of: `resetLate` tells it. */
  #lateReset: string | undefined;
  /** A resume waits for the manager's `resumed` frame; writes queue meanwhile. */
  #resuming: ((ok: boolean) => void) | undefined;
  #drainWaiters: (() => void)[] = [];
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  /**
   * UDP: the data frames of the datagrams written since the last flush, one after the other: one buffer per batch
   * rather than one per datagram (an allocation per datagram was a tenth of the daemon's CPU at 500 Mbit/s).
   */
  #frames: Uint8Array | undefined;
  #framesLen = 0;
  /** UDP: the size of the last batch, for the next one's buffer. */
  #lastBatch = 0;
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
    this.#channel = channel;
    this.#sessionId = sessionId;
    this.#request = request;
    this.#how = how;
    const stream = this.#stream = channel.open(methods[how.method ?? "Tunnel"]!.path);
    this.#call = this.#bind(stream);
    stream.write(encodeFrame(encodeTunnelFrame({ kind: "open", open: this.#openFrame(null) })));
    if (how.dial) {
      this.dial = how.dial;
      stream.write(encodeFrame(encodeTunnelFrame({ kind: "dial", dial: how.dial })));
      if (how.dial.code !== 1) this.#readEof = true;
    }
  }

  #openFrame(resume: { streamId: string; received: number } | null) {
    const request = this.#request, how = this.#how;
    return {
      sessionId: this.#sessionId,
      protocol: request.protocol === "tcp" ? Protocol.tcp : Protocol.udp,
      source: request.source,
      destination: request.destination,
      connectionId: how.connectionId ?? "",
      interceptId: how.interceptId ?? "",
      resumable: how.resumable === true && request.protocol === "tcp",
      resume,
    };
  }

  /** A call on `stream` whose events reach this tunnel while it is the current one. */
  #bind(stream: Stream): Call {
    const call = new Call(stream, this.#channel.maxMessageSize);
    call.onMessage = (msg) => {
      if (this.#call === call) this.#onMessage(msg);
    };
    call.onEnd = (st) => {
      if (this.#call === call) this.#onCallEnd(st.code, st.message);
    };
    stream.onDrain = () => {
      if (this.#stream === stream) this.#wakeDrain();
    };
    return call;
  }

  /** Whether the stream has ended (both directions finished, a reset, or an error). */
  get finished(): boolean {
    return this.#end !== undefined;
  }

  /**
   * Called when the manager made the stream resumable after the open: a joining stream (InterceptTunnel) that sent
   * its own dial result hears the stream's id in a dial frame of the manager's.
   */
  onResumable: (() => void) | undefined;

  /** Sends an ack of `received` bytes for this stream (set by the session, on its TunnelAcks stream). */
  sendAck: ((received: number) => void) | undefined;

  /** Payload bytes received from the manager so far. */
  get received(): number {
    return this.#bytesRead;
  }

  /** The manager's name for a resumable stream ("" when the stream is not resumable). */
  get streamId(): string {
    return this.#streamId;
  }

  /** The manager has received the payload up to `received` (its TunnelAck): forget it, and let writes go on. */
  acknowledged(received: number): void {
    // An ack older than what the resume exchange settled (acks travel on their own stream) says nothing new.
    if (this.#end || received <= this.#unackedBase) return;
    if (!this.#takeAck(received)) {
      this.reset(`the manager acknowledged byte ${received}, which was never sent`);
      return;
    }
    this.#wakeDrain();
  }

  /** Whether the manager keeps this stream resumable. */
  get resumable(): boolean {
    return this.#streamId !== "";
  }

  /** Whether the connection broke and the tunnel waits for `resume()` (or `reset()`). */
  get suspended(): boolean {
    return this.#suspended;
  }

  /**
   * Rejoins a suspended stream on a new connection of the same session: sends the bytes the manager has not
   * received, and asks for those this side has not. Resolves true once the manager took it back, false when it does
   * not hold the stream any more (the tunnel is then reset: reads throw TunnelResetError) or the new connection broke
   * too (the tunnel stays suspended).
   */
  resume(channel: Channel, sessionId: string): Promise<boolean> {
    if (!this.#suspended || this.#end) return Promise.resolve(false);
    this.#suspended = false;
    this.#channel = channel;
    this.#sessionId = sessionId;
    let stream: Stream;
    try {
      stream = channel.open(methods[this.#how.method ?? "Tunnel"]!.path);
    } catch {
      this.#suspended = true;
      return Promise.resolve(false);
    }
    this.#stream = stream;
    this.#call = this.#bind(stream);
    const open = this.#openFrame({ streamId: this.#streamId, received: this.#bytesRead });
    stream.write(encodeFrame(encodeTunnelFrame({ kind: "open", open })));
    return new Promise((resolve) => (this.#resuming = resolve));
  }

  /**
   * Tells the manager of a reset made while the tunnel was suspended (the local app reset its connection during the
   * cut): rejoins the stream on `channel` of the resumed session only to reset it, so that its far end hears the reset
   * now, not when the stream's grace period ends. False when there was none to tell (or the connection is gone).
   */
  resetLate(channel: Channel, sessionId: string): boolean {
    const reason = this.#lateReset;
    if (reason === undefined) return false;
    this.#lateReset = undefined;
    let stream: Stream;
    try {
      stream = channel.open(methods[this.#how.method ?? "Tunnel"]!.path);
    } catch {
      return false;
    }
    const call = new Call(stream, channel.maxMessageSize);
    call.onMessage = () => {}; // what the manager sends again before it reads the reset: nobody reads it now
    this.#sessionId = sessionId;
    const open = this.#openFrame({ streamId: this.#streamId, received: this.#bytesRead });
    stream.write(encodeFrame(encodeTunnelFrame({ kind: "open", open })));
    stream.write(encodeFrame(encodeTunnelFrame({ kind: "reset", reason })));
    stream.end();
    return true;
  }

  /** The manager's `resumed`: forget what it has, send the rest again, then what waited, then a FIN if one was due. */
  #resumed(received: number): void {
    const resolve = this.#resuming!;
    this.#resuming = undefined;
    if (!this.#takeAck(received)) {
      this.reset(
        `cannot resume: the manager has ${received} bytes, this side sent ${this.#unackedBase} to ` +
          `${this.#unackedBase + this.#unackedBytes}`,
      );
      resolve(false);
      return;
    }
    const stream = this.#stream!;
    for (let i = 0; i < this.#unacked.length;) {
      // Up to MAX_FRAME_PAYLOAD per frame, as #flush frames them.
      let n = 0;
      const start = i;
      while (i < this.#unacked.length && n + this.#unacked[i]!.length <= MAX_FRAME_PAYLOAD) {
        n += this.#unacked[i++]!.length;
      }
      if (i === start) n += this.#unacked[i++]!.length; // a chunk of a full frame on its own
      stream.write(encodeDataFrameHeader(n));
      for (let k = start; k < i; k++) stream.write(this.#unacked[k]!);
    }
    this.#flush();
    if (this.#writeClosed) {
      stream.write(FIN_FRAME);
      this.#endRequestIfDone();
    }
    this.#wakeDrain();
    resolve(true);
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
      this.#frameDatagram(data);
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

  /** UDP: appends `data`'s data frame to the batch, which goes out at the end of the tick (or when full). */
  #frameDatagram(data: Uint8Array): void {
    const need = DATA_HEADROOM + data.length;
    const have = this.#frames?.length ?? 0;
    if (this.#framesLen + need > have) {
      if (this.#framesLen + need > UDP_BATCH_BYTES) this.#flush(); // a full batch goes now, the datagram starts one
      // A buffer the size the last batch needed (doubled while a batch outgrows it), so a busy flow allocates once per
      // batch and a quiet one no more than its datagram.
      const size = Math.max(this.#framesLen + need, Math.min(UDP_BATCH_BYTES, Math.max(this.#lastBatch, 2 * have)));
      const frames = new Uint8Array(size);
      if (this.#framesLen > 0) frames.set(this.#frames!.subarray(0, this.#framesLen));
      this.#frames = frames;
    }
    const frames = this.#frames!;
    const at = writeDataFrameHeader(frames, this.#framesLen, data.length);
    frames.set(data, at);
    this.#framesLen = at + data.length;
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => this.#flush());
    }
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
    // While suspended or resuming the FIN waits: `#resumed` sends it after the payload.
    if (this.#suspended || this.#resuming) return;
    this.#stream!.write(FIN_FRAME);
    // A resumable stream keeps its request side open until the manager's FIN came too (a reset may still follow).
    if (!this.resumable) this.#stream!.end();
    else this.#endRequestIfDone();
  }

  /**
   * A resumable stream whose directions both finished ends its request side, which tells the manager it may end the
   * call: ended by the manager first, the request side would be reset, and each reset counts against rapid reset.
   */
  #endRequestIfDone(): void {
    const stream = this.#stream;
    if (!stream || this.#suspended || this.#resuming || !this.#writeClosed) return;
    if (this.#readEof && !this.#readError && !stream.sendEnded) stream.end();
  }

  /** Aborts both directions (TCP RST at the destination). */
  reset(reason = "reset by the client"): void {
    if (this.#end) return;
    if (this.#suspended) {
      // No call is left to end: this is the end, whatever was finished before the connection broke.
      if (this.#streamId) this.#lateReset = reason;
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#unacked = [];
      this.#unackedBytes = 0;
      this.#writeClosed = true;
      if (!this.#readEof && !this.#readError) this.#failRead(new TunnelResetError(reason));
      this.#end = { how: "reset", reason };
      this.#suspended = false;
      this.#stream = undefined;
      this.#wakeDrain();
      this.#resolveEnd(this.#end);
      return;
    }
    // Both directions already finished (FIN each way): nothing is left to abort, and the manager ends the stream on
    // its own. Not a reset, so no error is made for it (that cost showed per connection in the connection-rate
    // profile, where every closed connection came here).
    if (this.#writeClosed && this.#readEof && !this.#readError) return;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#frames = undefined;
    this.#framesLen = 0;
    this.#unacked = [];
    this.#unackedBytes = 0;
    const stream = this.#stream;
    if (stream && (!this.#writeClosed || this.resumable)) {
      this.#writeClosed = true;
      stream.write(encodeFrame(encodeTunnelFrame({ kind: "reset", reason })));
      stream.end();
    }
    this.#writeClosed = true;
    if (!this.#readEof && !this.#readError) this.#failRead(new TunnelResetError(reason));
    this.#end = { how: "reset", reason };
    const resuming = this.#resuming;
    this.#resuming = undefined;
    resuming?.(false);
  }

  /** Tells the manager the stream is alive while idle. */
  keepalive(): void {
    if (!this.#writeClosed && !this.#end && !this.#suspended && !this.#resuming) this.#stream!.write(KEEPALIVE_FRAME);
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
          this.#stream?.resume();
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
    return this.#pendingBytes + this.#framesLen + (this.#stream?.bufferedAmount ?? 0);
  }

  #writable(): boolean {
    return this.#writeBuffered() < WRITE_HIGH_WATER && this.#unackedBytes < RETAIN_LIMIT;
  }

  /** Forgets the sent payload the manager has received; false when `received` is outside what was sent. */
  #takeAck(received: number): boolean {
    let drop = received - this.#unackedBase;
    if (drop < 0 || drop > this.#unackedBytes) return false;
    this.#unackedBase = received;
    this.#unackedBytes -= drop;
    while (drop > 0) {
      const c = this.#unacked[0]!;
      if (c.length <= drop) {
        this.#unacked.shift();
        drop -= c.length;
      } else {
        this.#unacked[0] = c.subarray(drop);
        drop = 0;
      }
    }
    return true;
  }

  #wakeDrain(): void {
    if (!this.#writable() && !this.#end) return;
    for (const w of this.#drainWaiters.splice(0)) w();
  }

  #flush(): void {
    this.#flushQueued = false;
    if (this.#framesLen > 0) {
      const frames = this.#frames!.subarray(0, this.#framesLen);
      this.#lastBatch = this.#framesLen;
      this.#frames = undefined; // the stream keeps it until framed: the next batch gets a buffer of its own
      this.#framesLen = 0;
      if (!this.#end) this.#stream?.write(frames);
    }
    if (this.#pendingBytes === 0 || this.#end || this.#suspended || this.#resuming) return;
    const stream = this.#stream!;
    const keep = this.resumable;
    // Cut the pending chunks into frames of at most MAX_FRAME_PAYLOAD: each a header, then the chunks themselves.
    let chunks: Uint8Array[] = [];
    let n = 0;
    const emit = () => {
      stream.write(encodeDataFrameHeader(n));
      for (const c of chunks) {
        stream.write(c);
        // Kept for a resume until the manager acknowledges it: the same bytes, no copy.
        if (keep) this.#unacked.push(c);
      }
      if (keep) this.#unackedBytes += n;
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
          this.#stream!.pause();
        }
        if (this.resumable && this.#bytesRead - this.#ackedToPeer >= ACK_EVERY) {
          this.#ackedToPeer = this.#bytesRead;
          this.sendAck?.(this.#bytesRead);
        }
        break;
      case "resumed":
        if (this.#resuming) this.#resumed(frame.received);
        break;
      case "dial":
        if (frame.dial.code === 1 && frame.dial.streamId && this.#how.resumable && !this.#streamId) {
          this.#streamId = frame.dial.streamId;
          // A joining stream may have sent payload before this dial came (its local app spoke first): not kept, and
          // counted by the manager. What is kept starts after it; a resume that finds the manager without all of it
          // cannot carry on (reset), as an ack past it was taken for an ack of bytes never sent, or shifted the rest.
          this.#unackedBase = this.#bytesWritten - this.#pendingBytes;
          this.onResumable?.();
        }
        this.dial = frame.dial;
        this.#dialWaiter?.(frame.dial);
        this.#dialWaiter = undefined;
        if (frame.dial.code !== 1) this.#readEof = true;
        break;
      case "fin":
        this.#readEof = true;
        if (this.resumable) this.#endRequestIfDone();
        break;
      case "reset":
        this.#pending = [];
        this.#pendingBytes = 0;
        this.#frames = undefined;
        this.#framesLen = 0;
        this.#writeClosed = true;
        this.#readQueue = [];
        this.#readQueued = 0;
        this.#failRead(new TunnelResetError(frame.reason || "reset by the manager", frame.code));
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
    if (this.resumable && !this.#end && code !== Status.OK && !this.#channel.connection.usable) {
      // The connection broke under a resumable stream: wait for `resume()` (or `reset()`), keeping everything.
      this.#suspended = true;
      this.#stream = undefined;
      this.#paused = false;
      const resuming = this.#resuming;
      this.#resuming = undefined;
      resuming?.(false);
      return;
    }
    if (code === Status.OK && this.resumable && this.#stream && !this.#stream.sendEnded) {
      // A resumable stream keeps its request side open after its FIN (a reset may still follow): the manager ended
      // the call, so it ends cleanly now. Left open, the call would reset it, and the manager counts resets against
      // rapid reset (one per connection, at the connection rate).
      this.#stream.end();
    }
    if (this.#resuming) {
      // The manager ended the resumed call without a `resumed` frame (an error status): the stream is gone.
      const resuming = this.#resuming;
      this.#resuming = undefined;
      resuming(false);
    }
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
