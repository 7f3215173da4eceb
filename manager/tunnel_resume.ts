/**
 * A resumable TCP stream on the manager: its far end (the destination's socket, or for an intercepted connection the
 * agent's AgentTunnel stream: `FarEnd`) and the stream's state outlive the HTTP/2 stream that carries the workstation's
 * side, so that a workstation whose connection broke can rejoin the stream on a new connection (TunnelOpen.resume)
 * and carry on where it was.
 *
 * Each side counts the payload it has received and acknowledges it every ACK_EVERY bytes, on the session's
 * TunnelAcks stream (`tunnel_acks.ts`), apart from the data, which flow control may hold up; each keeps what it sent
 * until the other acknowledged it. Here that is the outbound bytes read from the destination, up to
 * `bufferBytes`: past that the socket is paused (the destination's TCP window closes), so nothing overflows. On a
 * resume the manager says how many inbound bytes the destination's socket took (TunnelResumed), and sends again what
 * the workstation has not received, then its FIN if the destination had ended. Inbound bytes count as received once
 * written to the far end: node keeps what the kernel has not yet taken (the agent's stream queues what its HTTP/2
 * window does not take yet), and the far end outlives the connection.
 *
 * When the carrying stream goes away (the connection broke), the stream is detached: the far end stays open and is
 * read into the buffer, and a grace timer starts; a resume before it ends re-attaches, else the far end is reset. A
 * resume that finds a stream still attached (its old connection hangs) takes it over. The session's end resets it.
 */
import type net from "node:net";
import { GrpcError, Status } from "../proto/grpc_web.ts";
import { encodeTunnelFrame } from "../proto/messages.ts";
import type { FrameSink, MessageSource, TunnelOutcome } from "./_streams.ts";
import type { Metrics } from "./metrics.ts";
import { IdleSweeper } from "./idle.ts";
import { type FarEnd, noIdle, socketEnd } from "./far_end.ts";
import type { BufferHold } from "./session_buffer.ts";

/** Bytes received between two acknowledgements. */
export const ACK_EVERY = 128 * 1024;
export const DEFAULT_RESUME_GRACE_MS = 30_000;
/** What a stream keeps of its outbound bytes until the workstation acknowledges them. */
export const DEFAULT_RESUME_BUFFER_BYTES = 4 << 20;

const FIN = encodeTunnelFrame({ kind: "fin" });
const KEEPALIVE = encodeTunnelFrame({ kind: "keepalive" });
const idleSweeper = new IdleSweeper();

export interface ResumableOptions {
  graceMs: number;
  bufferBytes: number;
  /** 0: no idle timeout. */
  idleTimeoutMs: number;
  metrics: Metrics;
  /** Count the payload in the tcp byte counters (default true; an intercepted connection's are not tunnel bytes). */
  countBytes?: boolean;
  /**
   * The stream's share of its session's budget: its kept bytes count there (the frames queued to the workstation are
   * those same bytes), and its reading pauses while the budget is full.
   */
  hold: BufferHold;
  decode(msg: Uint8Array): import("../proto/messages.ts").TunnelFrame;
  /** Tells the workstation how many of its bytes the socket took (on the session's TunnelAcks stream). */
  sendAck(received: number): void;
  /** Called once when the stream is gone for good (finished or reset). */
  onGone(): void;
}

interface Attachment {
  reader: MessageSource;
  out: FrameSink;
  resolve(o: TunnelOutcome): void;
}

export class ResumableTcpStream {
  readonly id = crypto.randomUUID();
  readonly #far: FarEnd;
  readonly #o: ResumableOptions;
  /** Inbound payload bytes written to the socket, and the count last acknowledged. */
  #taken = 0;
  #takenAcked = 0;
  /** Outbound bytes kept for a resume: [#base, #base + #keptBytes) of the destination's byte stream. */
  #kept: Uint8Array[] = [];
  #keptBytes = 0;
  #base = 0;
  #destEnded = false;
  #clientFin = false;
  /** The workstation ended its request side, which it does once both directions finished. */
  #bodyEnded = false;
  #finished = false;
  #att: Attachment | undefined;
  #gen = 0;
  #grace: ReturnType<typeof setTimeout> | undefined;
  /** When the current stream attached (performance.now). */
  #attachedAt = 0;
  #paused = false;
  readonly #idle;

  /** `far`: a destination's socket, or any `FarEnd` (an agent's stream, `intercept_resume.ts`). */
  constructor(far: net.Socket | FarEnd, options: ResumableOptions) {
    const end = this.#far = "kind" in far && far.kind === "far-end" ? far : socketEnd(far as net.Socket);
    this.#o = options;
    this.#idle = options.idleTimeoutMs > 0
      ? idleSweeper.track(options.idleTimeoutMs, () => this.reset(`idle for ${options.idleTimeoutMs} ms`))
      : noIdle;
    end.start({
      data: (chunk) => this.#onData(chunk),
      end: () => {
        if (this.#finished) return;
        this.#destEnded = true;
        this.#att?.out.writeMessage(FIN);
        this.#maybeFinish();
      },
      error: (reason) => this.reset(reason),
      close: () => {
        if (this.#finished) return;
        // Both FINs went through: the far end is done, the call waits for the workstation's end of its request side.
        if (this.#clientFin && this.#destEnded) return this.#maybeFinish();
        this.reset("destination closed the connection");
      },
    });
  }

  /** Bytes this stream holds: kept outbound bytes and the socket's unsent ones. */
  get buffered(): number {
    return this.#keptBytes + this.#far.writableLength;
  }

  /**
   * The workstation has received the outbound bytes up to `received` (a TunnelAck): they are forgotten, and reading
   * the destination goes on if it waited for room. False when `received` is outside what was sent (misuse).
   */
  acknowledge(received: number): boolean {
    // An ack older than what the resume exchange settled (acks travel on their own stream) says nothing new.
    if (this.#finished || received <= this.#base) return true;
    if (!this.#ack(received)) return false;
    this.#maybeResume();
    return true;
  }

  /** Inbound payload bytes the destination's socket took so far. */
  get received(): number {
    return this.#taken;
  }

  /** Whether a stream carries it now. */
  get attached(): boolean {
    return this.#att !== undefined;
  }

  /** Whether a stream that attached at `t` (performance.now) or later carries it now: it rejoined after a resume. */
  joinedSince(t: number): boolean {
    return this.#att !== undefined && this.#attachedAt >= t;
  }

  /**
   * Carries the stream on `reader`/`out` until that stream goes away (then the stream is detached) or the stream
   * ends. `clientReceived`: the outbound bytes the workstation has; `resumed`: answer with TunnelResumed first.
   */
  attach(reader: MessageSource, out: FrameSink, clientReceived: number, resumed: boolean): Promise<TunnelOutcome> {
    if (this.#finished) {
      out.writeMessage(encodeTunnelFrame({ kind: "reset", reason: "the stream has ended" }));
      return Promise.resolve({ code: Status.OK, message: "resume of an ended stream" });
    }
    const prev = this.#att;
    const silent = prev?.reader.lastReceivedAt === undefined ? 0 : performance.now() - prev.reader.lastReceivedAt;
    if (prev && silent > this.#o.graceMs) {
      // The old connection went silent (a link that went down) longer ago than the grace period: the stream would
      // have been reset had its loss been seen then.
      const reason = `the workstation was away ${Math.round(silent)} ms, longer than the grace period ` +
        `(${this.#o.graceMs} ms)`;
      out.writeMessage(encodeTunnelFrame({ kind: "reset", reason }));
      this.reset(reason);
      return Promise.resolve({ code: Status.OK, message: reason });
    }
    if (prev) {
      this.#att = undefined;
      prev.reader.cancel();
      prev.out.end(Status.CANCELLED, "the stream resumed on another connection");
      prev.resolve({ code: Status.CANCELLED, message: "resumed on another connection" });
    }
    clearTimeout(this.#grace);
    this.#grace = undefined;
    const gen = ++this.#gen;
    const { promise, resolve } = Promise.withResolvers<TunnelOutcome>();
    const att: Attachment = { reader, out, resolve };
    if (!this.#ack(clientReceived)) {
      const reason = `cannot resume from byte ${clientReceived}: this side keeps ${this.#base} to ` +
        `${this.#base + this.#keptBytes}`;
      out.writeMessage(encodeTunnelFrame({ kind: "reset", reason }));
      this.reset(reason);
      return Promise.resolve({ code: Status.OK, message: reason });
    }
    this.#att = att;
    this.#attachedAt = performance.now();
    out.onCancel = () => this.#detach(att, "the workstation's stream went away");
    if (resumed) out.writeMessage(encodeTunnelFrame({ kind: "resumed", received: this.#taken }));
    for (const c of this.#kept) out.writeData(c);
    if (this.#destEnded) out.writeMessage(FIN);
    this.#maybeResume();
    void this.#inbound(att, gen);
    return promise;
  }

  /** Resets the destination's socket and ends the stream (a reset frame to the workstation, if one listens). */
  reset(reason: string): void {
    if (this.#finished) return;
    this.#far.reset(reason);
    this.#att?.out.writeMessage(encodeTunnelFrame({ kind: "reset", reason }));
    this.#finish({ code: Status.OK, message: reason });
  }

  #finish(o: TunnelOutcome): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#grace);
    this.#idle.cancel();
    this.#kept = [];
    this.#keptBytes = 0;
    this.#o.hold.close();
    const att = this.#att;
    this.#att = undefined;
    att?.reader.cancel();
    att?.resolve(o);
    this.#far.destroy();
    this.#o.onGone();
  }

  /**
   * Both directions ended and the workstation ended its request side (it does so after both FINs): the call ends
   * (trailers OK). Ended before the request side, the call would reset it, which the workstation counts against
   * rapid reset.
   */
  #maybeFinish(): void {
    if (this.#clientFin && this.#destEnded && this.#bodyEnded && this.#att) {
      this.#finish({ code: Status.OK, message: "" });
    }
  }

  #detach(att: Attachment, why: string): void {
    if (this.#att !== att || this.#finished) return;
    this.#att = undefined;
    att.reader.cancel();
    att.resolve({ code: Status.CANCELLED, message: `detached: ${why}` });
    // The grace period runs from when the workstation was last heard: a link that went down silently is only seen
    // to have broken when it comes back (the workstation's kernel resets the old connection then).
    const heard = att.reader.lastReceivedAt ?? performance.now();
    const left = this.#o.graceMs - (performance.now() - heard);
    const expire = () => this.reset(`the workstation did not come back within ${this.#o.graceMs} ms`);
    if (left <= 0) return expire();
    this.#grace = setTimeout(expire, left);
    this.#maybeResume();
  }

  /** Forgets the outbound bytes the workstation has; false when `received` is outside what was sent. */
  #ack(received: number): boolean {
    let drop = received - this.#base;
    if (drop < 0 || drop > this.#keptBytes) return false;
    this.#base = received;
    this.#keptBytes -= drop;
    this.#o.hold.release(drop);
    while (drop > 0) {
      const c = this.#kept[0]!;
      if (c.length <= drop) {
        this.#kept.shift();
        drop -= c.length;
      } else {
        this.#kept[0] = c.subarray(drop);
        drop = 0;
      }
    }
    return true;
  }

  #onData(chunk: Uint8Array): void {
    this.#idle.touch();
    if (this.#o.countBytes !== false) {
      this.#o.metrics.bytes.add({ protocol: "tcp", direction: "outbound" }, chunk.length);
    }
    // Each chunk is a buffer of its own (a node:net read, a frame's payload): the kept list and the frame may both
    // reference it.
    this.#kept.push(chunk);
    this.#keptBytes += chunk.length;
    this.#o.hold.add(chunk.length);
    const att = this.#att;
    const room = att ? att.out.writeData(chunk) : true;
    if (!room || this.#keptBytes >= this.#o.bufferBytes || this.#o.hold.full) {
      this.#paused = true;
      this.#far.pause();
      if (!room) att!.out.ready().then(() => this.#maybeResume());
      else if (this.#o.hold.full) this.#o.hold.waitForRoom(this.#resumeForRoom);
    }
  }

  readonly #resumeForRoom = () => this.#maybeResume();

  #maybeResume(): void {
    if (!this.#paused || this.#finished || this.#keptBytes >= this.#o.bufferBytes) return;
    const att = this.#att;
    if (att && att.out.queued >= att.out.highWaterBytes) {
      att.out.ready().then(() => this.#maybeResume());
      return;
    }
    if (this.#o.hold.full) return this.#o.hold.waitForRoom(this.#resumeForRoom);
    this.#paused = false;
    this.#far.resume();
  }

  async #inbound(att: Attachment, gen: number): Promise<void> {
    const current = () => gen === this.#gen && this.#att === att && !this.#finished;
    for (;;) {
      let msg: Uint8Array | null;
      try {
        msg = await att.reader.next();
      } catch (e) {
        if (!current()) return;
        if (e instanceof GrpcError) return this.#protocolError(att, e);
        return this.#detach(att, e instanceof Error ? e.message : String(e));
      }
      if (!current()) return;
      if (msg === null) { // the request body ended: a FIN if none came before
        this.#bodyEnded = true;
        if (!this.#clientFin) {
          this.#clientFin = true;
          this.#far.end();
        }
        this.#maybeFinish();
        return;
      }
      let frame;
      try {
        frame = this.#o.decode(msg);
      } catch (e) {
        return this.#protocolError(att, e as GrpcError);
      }
      switch (frame.kind) {
        case "data": {
          if (this.#clientFin) {
            return this.#protocolError(att, new GrpcError(Status.INVALID_ARGUMENT, "Data after FIN"));
          }
          this.#idle.touch();
          if (this.#o.countBytes !== false) {
            this.#o.metrics.bytes.add({ protocol: "tcp", direction: "inbound" }, frame.data.length);
          }
          const room = this.#far.write(frame.data);
          this.#taken += frame.data.length;
          if (this.#taken - this.#takenAcked >= ACK_EVERY) {
            this.#takenAcked = this.#taken;
            this.#o.sendAck(this.#taken);
          }
          if (!room) await this.#far.drained();
          break;
        }
        case "fin":
          if (!this.#clientFin) {
            this.#clientFin = true;
            this.#far.end();
          }
          this.#maybeFinish();
          break;
        case "reset":
          this.#far.reset(`client reset: ${frame.reason}`);
          this.#finish({ code: Status.OK, message: `client reset: ${frame.reason}` });
          return;
        case "keepalive":
          att.out.writeMessage(KEEPALIVE);
          break;
        default:
          return this.#protocolError(
            att,
            new GrpcError(Status.INVALID_ARGUMENT, `Unexpected "${frame.kind}" frame after open`),
          );
      }
    }
  }

  #protocolError(att: Attachment, e: GrpcError): void {
    this.#far.reset(e.details);
    att.out.writeMessage(encodeTunnelFrame({ kind: "reset", reason: e.details }));
    this.#finish({ code: e.code, message: e.details });
  }
}
