/**
 * The two halves of a streaming gRPC-web call on the server: a reader of request messages and a bounded queue of
 * response frames that becomes the Response body.
 */
import { Deframer, encodeFrame, encodeTrailers, GrpcError, Status } from "../proto/grpc_web.ts";
import { encodeDataFrame } from "../proto/messages.ts";
import { errorMessage } from "../base/error_message.ts";
import type { BufferHold } from "./session_buffer.ts";

/** How a call ended: its trailers' status and message. */
export interface TunnelOutcome {
  code: Status;
  message: string;
}

/** Request messages of a streaming call: what the handlers read, whatever carries the call. */
export interface MessageSource {
  /** Bytes held for a partial message. */
  readonly buffered: number;
  /** The next message, or null when the body ended cleanly. GrpcError or ClientGoneError otherwise. */
  next(): Promise<Uint8Array | null>;
  /**
   * The next message if it is already here (as `next` would return it), without waiting: undefined when `next` would
   * wait. For a caller that handles a run of messages together (the UDP tunnel sends them in one system call).
   */
  take(): Uint8Array | null | undefined;
  /** Stops reading; the rest of the body is discarded. */
  cancel(): void;
  /** When the connection under the call last received anything (performance.now() ms), where the transport says. */
  readonly lastReceivedAt?: number;
}

/** Response frames of a streaming call, bounded: what the handlers write, whatever carries the call. */
export interface FrameSink {
  readonly closed: boolean;
  /** `writeFrame` says false from this many bytes queued. */
  readonly highWaterBytes: number;
  /** Bytes queued and not yet taken by the transport. */
  readonly queued: number;
  /** Queues a whole frame; false when the queue is full (the frame is still queued) or the stream is closed. */
  writeFrame(frame: Uint8Array): boolean;
  writeMessage(message: Uint8Array): boolean;
  /** Queues a tunnel data frame carrying `payload`, which the sink may keep until sent (the caller gives it up). */
  writeData(payload: Uint8Array): boolean;
  /** Resolves when the queue has room again, or the stream closed. */
  ready(): Promise<void>;
  /** Ends the body with the trailers frame. Later calls do nothing. */
  end(code: Status, message?: string): void;
  /** Called once if the client stops reading (it reset the stream or the connection closed). */
  onCancel: (reason: unknown) => void;
  /**
   * From now on `hold` counts the bytes queued here, as they are queued and taken (undefined: no longer; what the
   * previous hold counted is released). For a stream whose queue is its session's to pay for (`session_buffer.ts`).
   */
  count(hold: BufferHold | undefined): void;
}

/** Reads request messages from a body. Errors are GrpcErrors, or ClientGoneError when the client reset the stream. */
export class MessageReader implements MessageSource {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #deframer: Deframer;
  #ended = false;

  constructor(body: ReadableStream<Uint8Array> | null, maxMessageSize: number) {
    this.#reader = (body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() })).getReader();
    this.#deframer = new Deframer(maxMessageSize);
  }

  /** Bytes held for a partial message. */
  get buffered(): number {
    return this.#deframer.buffered;
  }

  /** The next message, or null when the body ended cleanly. */
  async next(): Promise<Uint8Array | null> {
    for (;;) {
      const m = takeRequestMessage(this.#deframer, this.#ended);
      if (m !== undefined) return m;
      let r: ReadableStreamReadResult<Uint8Array>;
      try {
        r = await this.#reader.read();
      } catch (e) {
        throw new ClientGoneError(errorMessage(e));
      }
      if (r.done) this.#ended = true;
      else this.#deframer.push(r.value);
    }
  }

  take(): Uint8Array | null | undefined {
    return takeRequestMessage(this.#deframer, this.#ended);
  }

  /** Stops reading; the rest of the body is discarded. */
  cancel(): void {
    this.#ended = true;
    this.#reader.cancel().catch(() => {});
  }
}

/**
 * The next request message `deframer` holds; null when the body `ended` cleanly there; undefined when more bytes are
 * needed. A trailers frame in a request, or a body that ended inside a frame, is INVALID_ARGUMENT.
 */
export function takeRequestMessage(deframer: Deframer, ended: boolean): Uint8Array | null | undefined {
  const f = deframer.next();
  if (f) {
    if (f.trailers) throw new GrpcError(Status.INVALID_ARGUMENT, "A request must not carry a trailers frame");
    return f.message;
  }
  if (!ended) return undefined;
  if (!deframer.atBoundary) {
    throw new GrpcError(Status.INVALID_ARGUMENT, "Request body ended inside a frame (truncated)");
  }
  return null;
}

/** The client went away mid-request (HTTP/2 RST_STREAM or a closed connection). */
export class ClientGoneError extends Error {
  override name = "ClientGoneError";
}

/**
 * A bounded queue of response frames, read by Deno.serve as the response body. `write` returns false once
 * `highWaterBytes` are queued; a producer then waits for `ready()`, so a slow client's HTTP/2 window stops the
 * producer instead of growing the queue.
 */
export class ResponseFrames implements FrameSink {
  readonly body: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #waiters: (() => void)[] = [];
  #closed = false;
  #hold: BufferHold | undefined;
  /** Called once if the client stops reading the body (it reset the stream or the connection closed). */
  onCancel: (reason: unknown) => void = () => {};

  constructor(readonly highWaterBytes: number) {
    this.body = new ReadableStream<Uint8Array>({
      start: (c) => {
        this.#controller = c;
      },
      pull: () => {
        this.#hold?.set(this.queued);
        this.#wake();
      },
      cancel: (reason) => {
        this.#closed = true;
        this.#hold?.set(0);
        this.#wake();
        this.onCancel(reason);
      },
    }, { highWaterMark: highWaterBytes, size: (chunk) => chunk.byteLength });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes queued and not yet taken by the HTTP layer. */
  get queued(): number {
    return this.#closed ? 0 : Math.max(0, this.highWaterBytes - (this.#controller.desiredSize ?? 0));
  }

  /** Counts what the body's queue holds, as the HTTP layer pulls it (`FrameSink.count`). */
  count(hold: BufferHold | undefined): void {
    this.#hold?.set(0);
    this.#hold = hold;
    hold?.set(this.queued);
  }

  /** Queues a whole frame; false when the queue is full (the frame is still queued) or the stream is closed. */
  writeFrame(frame: Uint8Array): boolean {
    if (this.#closed) return false;
    try {
      this.#controller.enqueue(frame);
    } catch {
      this.#gone();
      return false;
    }
    this.#hold?.set(this.queued);
    return (this.#controller.desiredSize ?? 0) > 0;
  }

  /** Queues one message in a data frame. */
  writeMessage(message: Uint8Array): boolean {
    return this.writeFrame(encodeFrame(message));
  }

  writeData(payload: Uint8Array): boolean {
    return this.writeFrame(encodeDataFrame([payload], payload.length));
  }

  /** Resolves when the queue has room again, or the stream closed. */
  ready(): Promise<void> {
    if (this.#closed || (this.#controller.desiredSize ?? 0) > 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Ends the body with the trailers frame. Later calls do nothing. */
  end(code: Status, message = ""): void {
    if (this.#closed) return;
    try {
      this.#controller.enqueue(encodeTrailers(code, message));
      this.#controller.close();
    } catch {
      return this.#gone();
    }
    this.#closed = true;
    this.#hold?.set(0);
    this.#wake();
  }

  /** The HTTP layer errored the body without calling cancel (the connection died): same as a cancel. */
  #gone(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#hold?.set(0);
    this.#wake();
    this.onCancel(new Error("response body is gone"));
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }
}
