/**
 * A call on a stream of tp's own HTTP/2 server (proto/h2/): the request's messages are deframed as the stream's
 * DATA arrives, and response frames go straight to the stream, with no web streams in between. Backpressure both
 * ways: a reader that falls behind pauses the stream (its window stops being credited, so the client stops
 * sending), and a response queue over its high-water mark makes `writeFrame` return false until the connection
 * framed it.
 */
import type { Stream } from "../proto/h2/connection.ts";
import type { HeaderList } from "../proto/h2/hpack.ts";
import { CONTENT_TYPE, Deframer, encodeFrame, encodeGrpcMessage, encodeTrailers, Status } from "../proto/grpc_web.ts";
import { encodeDataFrameHeader } from "../proto/messages.ts";
import { ClientGoneError, type FrameSink, type MessageSource, takeRequestMessage } from "./_streams.ts";
import type { ServerCall } from "./call.ts";
import type { BufferHold } from "./session_buffer.ts";

/**
 * A request reader holding this much undelivered pauses the stream; it resumes below a quarter of it. Two messages
 * of the default maximum (128 KiB): what one stream can hold in credited bytes, times the streams a connection may
 * open (proto/h2/connection.ts refuses more), bounds what a client makes the manager keep.
 */
const READ_PAUSE_BYTES = 256 << 10;

const RESPONSE_200: HeaderList = [[":status", "200"], ["content-type", CONTENT_TYPE]];

export class H2Call implements ServerCall {
  readonly method: string;
  readonly path: string;
  readonly #headers: HeaderList;
  #messages: H2Messages | undefined;
  #frames: H2Frames | undefined;
  #responded = false;

  constructor(readonly stream: Stream) {
    this.#headers = stream.headers ?? [];
    this.method = this.header(":method") ?? "";
    const p = this.header(":path") ?? "";
    const q = p.indexOf("?");
    this.path = q >= 0 ? p.slice(0, q) : p;
    stream.onClose = (code, reason) => {
      this.#frames?.count(undefined); // the queue went with the stream
      if (code === 0) return;
      this.#messages?.fail(reason);
      this.#frames?.gone(reason);
    };
  }

  /** Whether a response was started (the handler answered). */
  get responded(): boolean {
    return this.#responded;
  }

  header(name: string): string | null {
    for (const [k, v] of this.#headers) if (k === name) return v;
    return null;
  }

  messages(maxMessageSize: number): MessageSource {
    this.#messages ??= new H2Messages(this.stream, maxMessageSize);
    return this.#messages;
  }

  /** Nothing to drain on HTTP/2: once the response ends, the server resets the request side (NO_ERROR). */
  drain(_limit: number): Promise<void> {
    return Promise.resolve();
  }

  text(status: number, contentType: string, body: string): void {
    this.#respond([[":status", String(status)], ["content-type", contentType]], false);
    this.stream.write(new TextEncoder().encode(body));
    this.stream.end();
  }

  trailersOnly(code: Status, message: string, httpStatus = 200): void {
    this.#respond([
      [":status", String(httpStatus)],
      ["content-type", CONTENT_TYPE],
      ["grpc-status", String(code)],
      ["grpc-message", encodeGrpcMessage(message)],
    ], true);
  }

  body(bytes: Uint8Array): void {
    this.#respond([[":status", "200"], ["content-type", CONTENT_TYPE]], false);
    this.stream.write(bytes);
    this.stream.end();
  }

  /**
   * The response's frames. With `lazyHeaders` the headers go with the first frame rather than at once: a Tunnel's
   * first frame is its dial result, so the client wakes once for both (the headers alone cost it a wake-up, a read
   * and a header block to decode per new connection), and the manager dials before it writes anything.
   */
  frames(highWater: number, options: { lazyHeaders?: boolean } = {}): FrameSink {
    this.#answer();
    const respond = () => this.#send(RESPONSE_200, false);
    if (!options.lazyHeaders) respond();
    this.#frames = new H2Frames(this.stream, highWater, options.lazyHeaders ? respond : undefined);
    return this.#frames;
  }

  #respond(headers: HeaderList, endStream: boolean): void {
    this.#answer();
    this.#send(headers, endStream);
  }

  #answer(): void {
    if (this.#responded) throw new TypeError("The call was already answered");
    this.#responded = true;
  }

  #send(headers: HeaderList, endStream: boolean): void {
    if (this.stream.sendEnded) return; // the client went away first
    this.stream.respond(headers, endStream);
  }
}

class H2Messages implements MessageSource {
  readonly #deframer: Deframer;
  #ended = false;
  #error: Error | undefined;
  #waiter: (() => void) | undefined;

  constructor(readonly stream: Stream, maxMessageSize: number) {
    this.#deframer = new Deframer(maxMessageSize);
    stream.onData = (chunk) => {
      if (this.#ended) return;
      this.#deframer.push(chunk);
      if (this.#deframer.buffered > READ_PAUSE_BYTES) stream.pause();
      this.#wake();
    };
    stream.onEnd = () => {
      this.#ended = true;
      this.#wake();
    };
    if (stream.receiveEnded) this.#ended = true;
  }

  get buffered(): number {
    return this.#deframer.buffered;
  }

  get lastReceivedAt(): number {
    return this.stream.connection.lastReceivedAt;
  }

  async next(): Promise<Uint8Array | null> {
    for (;;) {
      const m = takeRequestMessage(this.#deframer, this.#ended);
      if (m !== undefined) {
        if (this.#deframer.buffered < READ_PAUSE_BYTES >>> 2) this.stream.resume();
        return m;
      }
      if (this.#error) throw this.#error;
      this.stream.resume();
      await new Promise<void>((r) => (this.#waiter = r));
    }
  }

  take(): Uint8Array | null | undefined {
    const m = takeRequestMessage(this.#deframer, this.#ended);
    if (m !== undefined && this.#deframer.buffered < READ_PAUSE_BYTES >>> 2) this.stream.resume();
    return m;
  }

  cancel(): void {
    this.#ended = true;
    this.stream.onData = undefined;
    this.stream.resume();
    this.#wake();
  }

  /** The stream was reset or its connection lost. */
  fail(reason: string): void {
    if (this.#ended) return;
    this.#error = new ClientGoneError(reason);
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }
}

class H2Frames implements FrameSink {
  #closed = false;
  #waiters: (() => void)[] = [];
  #hold: BufferHold | undefined;
  /** Sends the response headers; called once, before the first frame or the trailers. */
  #respond: (() => void) | undefined;
  onCancel: (reason: unknown) => void = () => {};

  constructor(readonly stream: Stream, readonly highWaterBytes: number, respond: (() => void) | undefined) {
    this.#respond = respond;
    stream.onDrain = () => this.#wake();
  }

  #headers(): void {
    const r = this.#respond;
    this.#respond = undefined;
    r?.();
  }

  get closed(): boolean {
    return this.#closed;
  }

  get queued(): number {
    return this.#closed ? 0 : this.stream.bufferedAmount;
  }

  count(hold: BufferHold | undefined): void {
    this.#hold?.set(0);
    this.#hold = hold;
    this.stream.onFramed = hold ? () => hold.set(this.stream.bufferedAmount) : undefined;
    hold?.set(this.stream.closed ? 0 : this.stream.bufferedAmount);
  }

  writeFrame(frame: Uint8Array): boolean {
    if (this.#closed) return false;
    this.#headers();
    this.stream.write(frame);
    this.#hold?.set(this.stream.bufferedAmount);
    return this.stream.bufferedAmount < this.highWaterBytes;
  }

  writeMessage(message: Uint8Array): boolean {
    return this.writeFrame(encodeFrame(message));
  }

  /** The frame's header, then the payload itself: no copy until the connection writes. */
  writeData(payload: Uint8Array): boolean {
    if (this.#closed) return false;
    this.#headers();
    this.stream.write(encodeDataFrameHeader(payload.length));
    this.stream.write(payload);
    this.#hold?.set(this.stream.bufferedAmount);
    return this.stream.bufferedAmount < this.highWaterBytes;
  }

  ready(): Promise<void> {
    if (this.#closed || this.stream.bufferedAmount < this.highWaterBytes) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  end(code: Status, message = ""): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#headers();
    this.stream.write(encodeTrailers(code, message));
    this.stream.end();
    this.#wake();
  }

  /** The client reset the stream or the connection ended before the response did. */
  gone(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wake();
    this.onCancel(new Error(reason));
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}
