/**
 * One HTTP/2 stream as its user sees it (callbacks, write, end, reset, pause), and its state (RFC 9113 section 5.1),
 * which `setState` alone changes. The connection (connection.ts) frames what it queues and feeds it what arrives.
 */
import { emitHeader, ErrorCode, errorName, Flag, FrameType, HEADER_LENGTH } from "./frame.ts";
import type { HeaderList } from "./hpack.ts";
import { checkTransition, isClosed, type StreamState } from "./stream_state.ts";

/**
 * What a stream asks of its connection (`Connection` in connection.ts): a type of its own, so that the stream does
 * not import the connection that imports it.
 */
export interface StreamOwner {
  readonly log: ((line: string) => void) | undefined;
  /** When the connection last received anything (performance.now() ms): a stream's user may ask its link's health. */
  readonly lastReceivedAt: number;
  sendHeaders(s: Stream, headers: HeaderList, endStream: boolean): void;
  /** The stream has something queued to send (data or its end). */
  wantsSend(s: Stream): void;
  resetStream(s: Stream, code: number, why: string): void;
  /** The stream's user consumed `n` bytes: credit the windows. */
  credit(s: Stream, n: number): void;
}

/**
 * One stream. Callbacks are plain fields (no emitter per stream: a tunnel holds one stream per TCP connection, so
 * their memory counts). The receive window is credited as `consume` is called; by default right after `onData`
 * returns, unless the stream is paused.
 */
export class Stream {
  /** Request headers (server) or response headers (client), once they arrived. */
  headers: HeaderList | undefined;
  trailers: HeaderList | undefined;
  /** The RST_STREAM code, once reset either way; -1 when the connection ended under the stream. */
  resetCode: number | undefined;
  onResponse: ((headers: HeaderList) => void) | undefined;
  onData: ((chunk: Uint8Array) => void) | undefined;
  onTrailers: ((headers: HeaderList) => void) | undefined;
  /** The peer ended its side (END_STREAM). */
  onEnd: (() => void) | undefined;
  /** Both sides done, or reset: called once, last. `code` is 0 for a clean close. */
  onClose: ((code: number, reason: string) => void) | undefined;
  /** The send queue emptied (after `bufferedAmount` was non-zero). */
  onDrain: (() => void) | undefined;
  /** Queued bytes were framed onto the connection: `bufferedAmount` fell (for a user that counts what it holds). */
  onFramed: (() => void) | undefined;

  /** Section 5.1's state; only `setState` changes it. */
  #state: StreamState = "idle";

  /** @internal */ sendWindow: number;
  /** @internal */ recvWindow: number;
  /** @internal */ queue: Uint8Array[] = [];
  /** @internal */ queued = 0;
  /** @internal `end()` was called: END_STREAM goes out once the queue is framed. */
  endQueued = false;
  /** @internal */ endTrailers: HeaderList | undefined;
  /** @internal */ paused = false;
  /** @internal */ unconsumed = 0;
  /** @internal */ toCredit = 0;
  /** @internal A client stream's request headers, until the peer's stream limit lets it start. */
  pendingBlock: Uint8Array | undefined;
  /** @internal The request's END_STREAM is known but not yet applied (inside onStream). */
  endPending = false;
  /** @internal The content-length the peer declared, checked against its DATA (RFC 9113 section 8.1.1). */
  contentLength: number | undefined;
  /** @internal DATA payload received (padding excluded). */
  dataReceived = 0;

  constructor(readonly id: number, readonly connection: StreamOwner, sendWindow: number, recvWindow: number) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  get state(): StreamState {
    return this.#state;
  }

  /** @internal The one place a stream's state changes: checked against section 5.1, logged when asked. */
  setState(next: StreamState, why: string): void {
    checkTransition(this.id, this.#state, next, why, this.connection.log);
    this.#state = next;
  }

  /** Closed either way (section 5.1's "closed", however it got there). */
  get closed(): boolean {
    return isClosed(this.#state);
  }

  /** Whether this side ended (or queued its END_STREAM) or the stream closed: nothing more may be sent. */
  get sendEnded(): boolean {
    return this.endQueued || this.#state === "half-closed (local)" || isClosed(this.#state);
  }

  /** Whether the peer ended its side (END_STREAM received) or the stream closed. */
  get receiveEnded(): boolean {
    return this.#state === "half-closed (remote)" || isClosed(this.#state);
  }

  /** Payload bytes written and not yet framed (waiting for window or for the transport). */
  get bufferedAmount(): number {
    return this.queued;
  }

  /** Server: sends the response headers. */
  respond(headers: HeaderList, endStream = false): void {
    this.connection.sendHeaders(this, headers, endStream);
  }

  /** Queues payload; `chunk` is kept until framed, so the caller must not reuse it. */
  write(chunk: Uint8Array): void {
    if (this.sendEnded) return;
    if (chunk.length === 0) return;
    this.queue.push(chunk);
    this.queued += chunk.length;
    this.connection.wantsSend(this);
  }

  /** Ends our side: END_STREAM on the last DATA, or on trailers when given. */
  end(trailers?: HeaderList): void {
    if (this.sendEnded) return;
    this.endQueued = true;
    this.endTrailers = trailers;
    this.connection.wantsSend(this);
  }

  /** Resets the stream (RST_STREAM with `code`, CANCEL by default). */
  reset(code: number = ErrorCode.CANCEL): void {
    this.connection.resetStream(this, code, `reset by this side (${errorName(code)})`);
  }

  /** Stops crediting the receive window: the peer stops sending once it used the window up. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const n = this.unconsumed;
    this.unconsumed = 0;
    if (n > 0) this.consume(n);
  }

  /** Credits `n` received bytes back to the peer (stream and connection windows). */
  consume(n: number): void {
    if (this.paused) {
      this.unconsumed += n;
      return;
    }
    this.connection.credit(this, n);
  }

  /**
   * @internal One DATA frame of the next `n` queued bytes onto `out`: its 9-byte header, then the queued chunks (or
   * parts of them) themselves. They are copied once, when the connection's flush joins its output.
   */
  takeDataFrame(n: number, endStream: boolean, out: Uint8Array[]): void {
    const h = new Uint8Array(HEADER_LENGTH);
    emitHeader(h, 0, { length: n, type: FrameType.DATA, flags: endStream ? Flag.END_STREAM : 0, streamId: this.id });
    out.push(h);
    let left = n;
    while (left > 0) {
      const c = this.queue[0]!;
      if (c.length <= left) {
        out.push(c);
        left -= c.length;
        this.queue.shift();
      } else {
        out.push(c.subarray(0, left));
        this.queue[0] = c.subarray(left);
        left = 0;
      }
    }
    this.queued -= n;
    this.onFramed?.();
  }
}
