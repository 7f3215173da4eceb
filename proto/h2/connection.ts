/**
 * One HTTP/2 connection (RFC 9113), either end, over any byte transport: tp's own, because the two it had cost too
 * much on the tunnel's path (scripts/bench: node:http2 kept ~20 KiB per idle stream on the client and Deno.serve
 * allows 200 streams per connection and adds web streams per chunk; scripts/bench and the README's figures).
 *
 * What it does: the connection preface and SETTINGS exchange, streams with flow control both ways (stream and
 * connection windows; WINDOW_UPDATE sent as the reader consumes), HEADERS with CONTINUATION and trailers, DATA with
 * padding, RST_STREAM, PING (answered, and `ping()` for keepalives), GOAWAY both ways, MAX_CONCURRENT_STREAMS (a
 * client queues streams past the limit the peer's SETTINGS gave; before those arrive the limit is unknown and
 * unlimited, as RFC 9113 section 5.1.2 has it, so a server with a small limit may refuse early streams). Frames
 * the peer sends in one read are handled in one go; frames we produce in one tick go to the transport as one write
 * (with `flush: "io"`, in one turn of the event loop).
 *
 * What it leaves out: server push (we send ENABLE_PUSH 0 and refuse PUSH_PROMISE), priorities (PRIORITY frames are
 * read and ignored, as RFC 9113 allows), the HPACK dynamic table when encoding (see hpack.ts).
 *
 * Errors: a connection error (malformed frame, flow-control violation, bad header block) sends GOAWAY with its code
 * and closes; a stream error resets that stream only.
 *
 * This file reads and dispatches frames, frames what streams queue, and runs the connection's lifecycle. Beside
 * it: stream.ts (the user's Stream and its one `setState`), stream_state.ts (RFC 9113 section 5.1's states, their
 * transitions, and what a frame on a closed stream means), header_block.ts (HEADERS and CONTINUATION in and out),
 * settings.ts (ours, and a peer's checked), pings.ts (ours awaiting their ACK), fields.ts (malformed requests and responses), limits.ts, options.ts.
 */
import {
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  errorName,
  Flag,
  frame,
  FrameType,
  goawayFrame,
  HEADER_LENGTH,
  MAX_WINDOW,
  parseHeader,
  pingFrame,
  PREFACE,
  readU32,
  rstStreamFrame,
  settingsFrame,
  windowUpdateFrame,
} from "./frame.ts";
import { type HeaderList, HpackDecoder, HpackEncoder, HpackError } from "./hpack.ts";
import { InputBuffer } from "./input_buffer.ts";
import { checkRequest, checkResponse, checkTrailers, contentLength } from "./fields.ts";
import { type ConnectionCounters, DEFAULT_LIMITS, type Limits, newCounters, TokenBucket } from "./limits.ts";
import { HeaderBlockReader, headerFrames, SELF_DEPENDENT, stripPadding } from "./header_block.ts";
import { ConnectionError, type ConnectionOptions, type Transport } from "./options.ts";
import { connectionWindow, DEFAULT_FRAME_SIZE, DEFAULT_STREAM_WINDOW, ourSettings, readSettings } from "./settings.ts";
import { Stream } from "./stream.ts";
import { type ClosedState, ClosedStreams, type LateFrame } from "./stream_state.ts";
import { errorMessage } from "../../base/error_message.ts";
import { concat } from "../../base/bytes.ts";
import { Pings } from "./pings.ts";

export { ConnectionError, type ConnectionOptions, Stream, type Transport };

/** An HPACK dynamic table size update to 0 (RFC 7541 section 6.3). */
const TABLE_SIZE_ZERO = new Uint8Array([0x20]);

export class Connection {
  readonly #role: "client" | "server";
  readonly #transport: Transport;
  readonly #options: ConnectionOptions;
  readonly #streams = new Map<number, Stream>();
  readonly #decoder = new HpackDecoder();
  readonly #encoder = new HpackEncoder();
  readonly #streamWindow: number;
  readonly #maxFrameSize: number;
  readonly #highWater: number;
  readonly #limits: Limits;
  readonly #resets: TokenBucket;
  /** What the peer tried that we dropped, refused or cut off. */
  readonly counters: ConnectionCounters = newCounters();

  // Input.
  readonly #in = new InputBuffer();
  #prefaceSeen: boolean;
  #settingsSeen = false;
  readonly #headerBlocks: HeaderBlockReader;
  #lastPeerStream = 0;
  readonly #closedStreams: ClosedStreams;
  #recvConnWindow: number;
  #connToCredit = 0;

  // Output.
  #out: Uint8Array[] = [];
  #flushQueued = false;
  #sending = new Set<Stream>();
  #sendConnWindow = DEFAULT_WINDOW;
  #peerStreamWindow = DEFAULT_WINDOW;
  #peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  #peerMaxStreams = Infinity;
  #nextStreamId: number;
  #localOpen = 0;
  #waitingToStart: Stream[] = [];
  readonly #pings = new Pings();

  #tableSizeUpdate = false;
  #goaway: ConnectionError | undefined;
  #closed: ConnectionError | undefined;
  #resolveClosed!: (e: ConnectionError) => void;
  /** Resolves when the connection ended, with why (code NO_ERROR for a clean close). */
  readonly closed: Promise<ConnectionError>;
  /** When bytes last came from the peer (performance.now() ms): how long a silent connection has been silent. */
  lastReceivedAt = performance.now();
  /** Called once when the peer sent GOAWAY (no new streams from then on). */
  onGoaway: ((e: ConnectionError) => void) | undefined;
  /** @internal Where streams log their changes of state (ConnectionOptions.log). */
  readonly log: ((line: string) => void) | undefined;

  constructor(role: "client" | "server", transport: Transport, options: ConnectionOptions = {}) {
    this.#role = role;
    this.#transport = transport;
    this.#options = options;
    this.#streamWindow = options.streamWindow ?? DEFAULT_STREAM_WINDOW;
    this.#maxFrameSize = options.maxFrameSize ?? DEFAULT_FRAME_SIZE;
    this.#highWater = options.transportHighWater ?? 1 << 20;
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
    const now = options.now ?? (() => performance.now());
    this.#resets = new TokenBucket(this.#limits.resetBurst, this.#limits.resetRate, now);
    this.log = options.log;
    this.#closedStreams = new ClosedStreams(now, options.log);
    this.#headerBlocks = new HeaderBlockReader(this.#limits.maxContinuations);
    this.#recvConnWindow = connectionWindow(options);
    this.#nextStreamId = this.#role === "client" ? 1 : 2;
    this.#prefaceSeen = this.#role === "client";
    this.closed = new Promise((r) => (this.#resolveClosed = r));
    if (this.#role === "client") this.#queue(PREFACE);
    this.#queue(settingsFrame(ourSettings(role, this.#streamWindow, this.#maxFrameSize, options.maxConcurrentStreams)));
    const extra = this.#recvConnWindow - DEFAULT_WINDOW;
    if (extra > 0) this.#queue(windowUpdateFrame(0, extra));
  }

  /** Streams open now. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** Whether new streams may be opened (no GOAWAY either way, not closed). */
  get usable(): boolean {
    return !this.#goaway && !this.#closed;
  }

  /** Whether the peer's connection preface arrived whole (a server: the magic and the first SETTINGS). */
  get prefaceReceived(): boolean {
    return this.#prefaceSeen && this.#settingsSeen;
  }

  /** Bytes received and held: a frame not yet whole, and a header block waiting for its END_HEADERS. */
  get inputBuffered(): number {
    return this.#in.length + this.#headerBlocks.buffered;
  }

  /** Why the connection ended, once it did. */
  get error(): ConnectionError | undefined {
    return this.#closed;
  }

  // ------------------------------------------------------------------------------------------------ client side

  /** Client: opens a stream with request headers (a header list, or a block `encodeHeaders` made once). */
  request(headers: HeaderList | Uint8Array, endStream = false): Stream {
    if (this.#role !== "client") throw new TypeError("Only a client opens streams");
    if (!this.usable) {
      throw this.#goaway ?? this.#closed ?? new ConnectionError(ErrorCode.INTERNAL_ERROR, "connection closed");
    }
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    const s = new Stream(id, this, this.#peerStreamWindow, this.#streamWindow);
    this.#streams.set(id, s);
    const block = headers instanceof Uint8Array ? headers : this.#encoder.encode(headers);
    if (endStream) s.endQueued = true;
    s.pendingBlock = block;
    if (this.#localOpen < this.#peerMaxStreams) this.#start(s);
    else this.#waitingToStart.push(s);
    return s;
  }

  /** A header block for `request`, encoded once and reused. */
  encodeHeaders(headers: HeaderList): Uint8Array {
    return this.#encoder.encode(headers);
  }

  #start(s: Stream): void {
    const block = s.pendingBlock!;
    s.pendingBlock = undefined;
    s.setState("open", "HEADERS sent");
    this.#localOpen++;
    const endNow = s.endQueued && s.queued === 0 && !s.endTrailers;
    this.#queueHeaderBlock(s.id, block, endNow);
    if (endNow) this.#localEnded(s);
    else if (s.queued > 0 || s.endQueued) this.#sending.add(s);
  }

  // ------------------------------------------------------------------------------------------------ both sides

  /** Measures a round trip with PING; rejects when the connection ends first. */
  ping(): Promise<number> {
    if (this.#closed) return Promise.reject(this.#closed);
    const { data, roundTrip } = this.#pings.start(performance.now());
    this.#queue(pingFrame(data, false));
    return roundTrip;
  }

  /** Sends GOAWAY and closes once the open streams are done (at once when there are none). */
  close(): void {
    if (this.#closed) return;
    if (!this.#goaway) {
      this.#goaway = new ConnectionError(ErrorCode.NO_ERROR, "connection closing");
      this.#queue(goawayFrame(this.#lastPeerStream, ErrorCode.NO_ERROR));
    }
    this.#waitingToStart.splice(0).forEach((s) => this.#closeStream(s, ErrorCode.REFUSED_STREAM, "connection closing"));
    if (this.#streams.size === 0) this.#end(new ConnectionError(ErrorCode.NO_ERROR, "connection closed"));
  }

  /** Ends the connection now: GOAWAY with `code`, every stream reset. */
  destroy(code: number = ErrorCode.CANCEL, reason = "connection destroyed"): void {
    if (this.#closed) return;
    this.#queue(goawayFrame(this.#lastPeerStream, code, reason));
    this.#end(new ConnectionError(code, reason));
  }

  /** The transport closed (EOF or error): every stream ends with `reason`. */
  transportClosed(reason = "connection lost"): void {
    if (this.#closed) return;
    this.#end(new ConnectionError(ErrorCode.INTERNAL_ERROR, reason), false);
  }

  /** The transport took what was buffered: frames held back for backpressure go on. */
  transportDrained(): void {
    if (this.#transport.buffered === 0) this.counters.queuedControlFrames = 0;
    if (this.#sending.size > 0) this.#scheduleFlush();
  }

  /** Bytes from the peer. Does not keep `bytes` past the call. */
  receive(bytes: Uint8Array): void {
    if (this.#closed) return;
    this.lastReceivedAt = performance.now();
    let b = bytes;
    const held = this.#in.length > 0;
    if (held) {
      this.#in.append(bytes);
      b = this.#in.bytes;
    }
    let off = 0;
    try {
      if (!this.#prefaceSeen) {
        const n = Math.min(b.length, PREFACE.length);
        for (let i = 0; i < n; i++) {
          if (b[i] !== PREFACE[i]) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "Not an HTTP/2 preface");
        }
        if (b.length < PREFACE.length) {
          if (!held) this.#in.append(b);
          return;
        }
        this.#prefaceSeen = true;
        off = PREFACE.length;
      }
      while (b.length - off >= HEADER_LENGTH && !this.#closed) {
        const h = parseHeader(b, off);
        if (h.length > this.#maxFrameSize) {
          throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `Frame of ${h.length} bytes over our maximum`);
        }
        if (b.length - off < HEADER_LENGTH + h.length) break;
        const payload = b.subarray(off + HEADER_LENGTH, off + HEADER_LENGTH + h.length);
        off += HEADER_LENGTH + h.length;
        this.#onFrame(h.type, h.flags, h.streamId, payload);
      }
    } catch (e) {
      const err = e instanceof ConnectionError
        ? e
        : e instanceof HpackError
        ? new ConnectionError(ErrorCode.COMPRESSION_ERROR, e.message)
        : new ConnectionError(ErrorCode.INTERNAL_ERROR, errorMessage(e));
      this.#in.clear();
      this.destroy(err.code, err.message);
      return;
    }
    if (this.#closed) return this.#in.clear();
    if (held) this.#in.consume(off);
    else if (off < b.length) this.#in.append(b.subarray(off));
    this.counters.inputCopied = this.#in.copied;
    this.#creditConnection();
  }

  // ------------------------------------------------------------------------------------------------ frames in

  #onFrame(type: number, flags: number, id: number, p: Uint8Array): void {
    if (!this.#settingsSeen && type !== FrameType.SETTINGS) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "The first frame was not SETTINGS");
    }
    if (this.#headerBlocks.open && type !== FrameType.CONTINUATION) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "A header block was interrupted by another frame");
    }
    switch (type) {
      case FrameType.DATA:
        return this.#onData(flags, id, p);
      case FrameType.HEADERS: {
        const hb = this.#headerBlocks.headers(flags, id, p);
        return hb && this.#onHeaderBlock(hb.streamId, hb.flags, hb.block);
      }
      case FrameType.CONTINUATION: {
        const hb = this.#headerBlocks.continuation(flags, id, p);
        return hb && this.#onHeaderBlock(hb.streamId, hb.flags, hb.block);
      }
      case FrameType.PRIORITY:
        if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (p.length !== 5) return this.#streamError(id, ErrorCode.FRAME_SIZE_ERROR);
        if (readU32(p, 0, true) === id) return this.#streamError(id, ErrorCode.PROTOCOL_ERROR); // section 5.3.1
        return;
      case FrameType.RST_STREAM: {
        if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
        if (p.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM is not 4 bytes");
        this.#checkNotIdle(id);
        const s = this.#streams.get(id);
        if (s) {
          const code = readU32(p, 0);
          this.counters.peerResets++;
          this.#spendReset();
          this.#closeStream(s, code, `reset by the peer (${errorName(code)})`, "closed (reset)");
        } else this.#closedStreams.peerReset(id);
        return;
      }
      case FrameType.SETTINGS:
        return this.#onSettings(flags, id, p);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE though push is disabled");
      case FrameType.PING:
        if (id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
        if (p.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "PING is not 8 bytes");
        if (flags & Flag.ACK) this.#pings.ack(p, performance.now());
        else this.#queueControl(pingFrame(p.slice(), true));
        return;
      case FrameType.GOAWAY: {
        if (id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
        if (p.length < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY under 8 bytes");
        const last = readU32(p, 0, true);
        const code = readU32(p, 4);
        const debug = new TextDecoder().decode(p.subarray(8));
        const err = new ConnectionError(code, `GOAWAY from the peer (${errorName(code)})${debug ? `: ${debug}` : ""}`);
        const first = !this.#goaway;
        this.#goaway ??= err;
        // Streams we opened past `last` were never processed: refused, so a caller may retry them.
        for (const s of [...this.#streams.values()]) {
          if (this.#isLocal(s.id) && s.id > last) this.#closeStream(s, ErrorCode.REFUSED_STREAM, err.message);
        }
        this.#waitingToStart.splice(0).forEach((s) => this.#closeStream(s, ErrorCode.REFUSED_STREAM, err.message));
        if (first) this.#guard(undefined, () => this.onGoaway?.(err));
        if (code !== ErrorCode.NO_ERROR || this.#streams.size === 0) this.#end(err);
        return;
      }
      case FrameType.WINDOW_UPDATE: {
        if (p.length !== 4) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE is not 4 bytes");
        const inc = readU32(p, 0, true);
        if (id === 0) {
          if (inc === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
          this.#sendConnWindow += inc;
          if (this.#sendConnWindow > MAX_WINDOW) {
            throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "Connection window over 2^31-1");
          }
          if (this.#sending.size > 0) this.#scheduleFlush();
          return;
        }
        this.#checkNotIdle(id);
        // An increment of 0 is an error even on a stream that just closed (section 6.9): the peer is broken.
        if (inc === 0) return this.#streamError(id, ErrorCode.PROTOCOL_ERROR);
        const s = this.#streams.get(id);
        if (!s) return;
        s.sendWindow += inc;
        if (s.sendWindow > MAX_WINDOW) return this.#streamError(id, ErrorCode.FLOW_CONTROL_ERROR);
        if (s.queued > 0 || s.endQueued) this.wantsSend(s);
        return;
      }
      default:
        return; // unknown frame types are ignored (section 4.1)
    }
  }

  #onSettings(flags: number, id: number, p: Uint8Array): void {
    if (id !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) {
      if (p.length !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      return;
    }
    const u = readSettings(p, this.#limits.maxSettingsEntries);
    this.#settingsSeen = true;
    if (u.maxConcurrentStreams !== undefined) this.#peerMaxStreams = u.maxConcurrentStreams;
    if (u.maxFrameSize !== undefined) this.#peerMaxFrame = u.maxFrameSize;
    if (u.smallerTable) this.#tableSizeUpdate = true;
    const window = u.initialWindowSize;
    if (window !== undefined) {
      const delta = window - this.#peerStreamWindow;
      this.#peerStreamWindow = window;
      for (const s of this.#streams.values()) {
        s.sendWindow += delta;
        if (s.sendWindow > MAX_WINDOW) {
          throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "A stream window went over 2^31-1");
        }
        if (delta > 0 && (s.queued > 0 || s.endQueued)) this.wantsSend(s);
      }
    }
    if (u.maxConcurrentStreams !== undefined) this.#startWaiting();
    this.#queueControl(frame(FrameType.SETTINGS, Flag.ACK, 0));
  }

  #onHeaderBlock(id: number, flags: number, block: Uint8Array): void {
    // Decoded even for a stream we ignore: the decoder's table must see every block (RFC 7541 section 2.2).
    const headers = this.#decoder.decode(block);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    let s = this.#streams.get(id);
    if (!s) {
      if (this.#isLocal(id) || id <= this.#lastPeerStream) return this.#onClosedHeaders(id, endStream, headers);
      if (this.#role === "client") throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "Server opened a stream");
      this.#lastPeerStream = id;
      if (this.#goaway || this.#streams.size >= (this.#options.maxConcurrentStreams ?? 100_000)) {
        // A refused stream costs us a frame and the peer nothing: it counts as a reset (Go does the same).
        this.counters.refusedStreams++;
        this.#spendReset();
        return this.#streamError(id, ErrorCode.REFUSED_STREAM);
      }
      const length = contentLength(headers);
      if (flags & SELF_DEPENDENT || checkRequest(headers) !== undefined || length === null) {
        return this.#malformed(id);
      }
      s = new Stream(id, this, this.#peerStreamWindow, this.#streamWindow);
      s.setState("open", "HEADERS received");
      s.contentLength = length;
      this.#streams.set(id, s);
      s.headers = headers;
      if (endStream && length !== undefined && length !== 0) return this.#malformed(id);
      // A request without a body (END_STREAM on its headers) is complete though onEnd comes after onStream: an
      // answer given inside onStream must not reset a request side that only looks open (see #localEnded).
      s.endPending = endStream;
      const stream = s;
      this.#guard(s, () => this.#options.onStream?.(stream));
      s.endPending = false;
    } else if (s.state === "half-closed (remote)") {
      return this.#streamError(id, ErrorCode.STREAM_CLOSED);
    } else if (flags & SELF_DEPENDENT) {
      return this.#malformed(id);
    } else if (s.headers === undefined) {
      const length = contentLength(headers);
      if (checkResponse(headers) !== undefined || length === null) return this.#malformed(id);
      const status = headers[0]![1]; // checkResponse: :status comes first
      if (status[0] === "1") return; // informational (1xx)
      s.headers = headers;
      // No body to count in answers to HEAD (tp sends none) and in 204 and 304 (RFC 9110 sections 6.4.1, 8.6).
      s.contentLength = status === "204" || status === "304" ? undefined : length;
      const stream = s;
      this.#guard(s, () => stream.onResponse?.(headers));
    } else {
      if (!endStream) return this.#streamError(id, ErrorCode.PROTOCOL_ERROR); // trailers must end the stream
      if (checkTrailers(headers) !== undefined) return this.#malformed(id);
      s.trailers = headers;
      const stream = s;
      this.#guard(s, () => stream.onTrailers?.(headers));
    }
    if (endStream && !s.closed) this.#remoteEnded(s);
  }

  /** A malformed request or response (RFC 9113 section 8.1.1): a stream error PROTOCOL_ERROR, counted. */
  #malformed(id: number): void {
    this.counters.malformed++;
    this.#streamError(id, ErrorCode.PROTOCOL_ERROR);
  }

  /** HEADERS on a stream that is no longer open (RFC 9113 section 5.1). */
  #onClosedHeaders(id: number, endStream: boolean, headers: HeaderList): void {
    if (this.#isLocal(id) && id >= this.#nextStreamId) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on idle stream ${id}`);
    }
    this.counters.closedStreamFrames++;
    const late = this.#closedStreams.headers(id, endStream, headers);
    if (late !== undefined) return this.#lateFrame(id, late, "HEADERS");
    // A peer's stream id we do not remember: one it skipped (opening a later one closed it, section 5.1.1), or
    // one closed over CLOSED_KEPT streams ago. Ours that closed long ago: ignored.
    if (this.#isLocal(id)) return;
    throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS on stream ${id}, lower than one opened before`);
  }

  /** DATA on a stream that is no longer open; its window was given back already. */
  #onClosedData(id: number, flags: number, length: number): void {
    this.counters.closedStreamFrames++;
    const late = this.#closedStreams.data(id, (flags & Flag.END_STREAM) !== 0, length);
    if (late !== undefined) return this.#lateFrame(id, late, "DATA");
    this.#streamError(id, ErrorCode.STREAM_CLOSED); // not remembered: as Go's x/net/http2 does
  }

  #lateFrame(id: number, late: LateFrame, what: string): void {
    switch (late) {
      case "ignore":
        return;
      case "stream-closed":
        return this.#streamError(id, ErrorCode.STREAM_CLOSED);
      case "malformed":
        return this.#malformed(id);
      case "connection-closed":
        throw new ConnectionError(ErrorCode.STREAM_CLOSED, `${what} on stream ${id} after its END_STREAM`);
    }
  }

  #onData(flags: number, id: number, p: Uint8Array): void {
    if (id === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    // The whole frame counts against the windows, padding included (section 6.9.1).
    this.#recvConnWindow -= p.length;
    if (this.#recvConnWindow < 0) {
      throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "Peer sent past the connection window");
    }
    const s = this.#streams.get(id);
    if (!s || s.state === "half-closed (remote)" || s.headers === undefined) {
      this.#connToCredit += p.length; // not ours to hold: give the connection window back
      this.#checkNotIdle(id);
      if (!s) return this.#onClosedData(id, flags, stripPadding(flags, p).length);
      this.#streamError(id, s.headers === undefined ? ErrorCode.PROTOCOL_ERROR : ErrorCode.STREAM_CLOSED);
      return;
    }
    s.recvWindow -= p.length;
    if (s.recvWindow < 0) {
      this.#connToCredit += p.length;
      return this.#streamError(id, ErrorCode.FLOW_CONTROL_ERROR);
    }
    const data = stripPadding(flags, p);
    s.dataReceived += data.length;
    if (
      s.contentLength !== undefined &&
      (s.dataReceived > s.contentLength || ((flags & Flag.END_STREAM) && s.dataReceived !== s.contentLength))
    ) {
      this.#connToCredit += p.length;
      return this.#malformed(id);
    }
    const padding = p.length - data.length;
    if (padding > 0) this.#credit(s, padding);
    if (data.length > 0) {
      if (s.onData) {
        const onData = s.onData;
        this.#guard(s, () => onData(data.slice()));
        // A stream the callback closed no longer counts its bytes: the connection window gets them back here.
        if (!s.closed) s.consume(data.length);
        else this.#connToCredit += data.length;
      } else this.#credit(s, data.length);
    }
    if ((flags & Flag.END_STREAM) && !s.closed) this.#remoteEnded(s);
  }

  // ------------------------------------------------------------------------------------------------ flow control

  /** @internal Stream.consume: credit the windows, sending WINDOW_UPDATEs in batches. */
  credit(s: Stream, n: number): void {
    this.#credit(s, n);
    this.#creditConnection();
  }

  #credit(s: Stream, n: number): void {
    this.#connToCredit += n;
    if (s.receiveEnded) return;
    s.toCredit += n;
    // Batched: an update once a quarter of the window was taken, so one small message costs no extra frame.
    if (s.toCredit >= this.#streamWindow >>> 2) {
      s.recvWindow += s.toCredit;
      this.#queue(windowUpdateFrame(s.id, s.toCredit));
      s.toCredit = 0;
    }
  }

  #creditConnection(): void {
    const full = connectionWindow(this.#options);
    if (this.#connToCredit >= full >>> 2 && !this.#closed) {
      this.#recvConnWindow += this.#connToCredit;
      this.#queue(windowUpdateFrame(0, this.#connToCredit));
      this.#connToCredit = 0;
    }
  }

  // ------------------------------------------------------------------------------------------------ frames out

  /** @internal */
  sendHeaders(s: Stream, headers: HeaderList, endStream: boolean): void {
    if (s.closed || s.state === "half-closed (local)") return;
    if (this.#role === "server" && s.queued === 0 && !s.endQueued) {
      this.#queueHeaderBlock(s.id, this.#encoder.encode(headers), endStream);
      if (endStream) this.#localEnded(s);
    } else throw new TypeError("respond() is for a server stream, before any DATA");
  }

  /** @internal A stream has something to send. */
  wantsSend(s: Stream): void {
    if (s.state === "idle" || s.closed) return;
    this.#sending.add(s);
    this.#scheduleFlush();
  }

  /** @internal */
  resetStream(s: Stream, code: number, reason: string): void {
    if (s.closed) return;
    if (s.state !== "idle") this.#queue(rstStreamFrame(s.id, code));
    this.#closeStream(s, code, reason);
  }

  #queueHeaderBlock(id: number, headerBlock: Uint8Array, endStream: boolean): void {
    let block = headerBlock;
    if (this.#tableSizeUpdate) {
      this.#tableSizeUpdate = false;
      block = concat([TABLE_SIZE_ZERO, block]);
    }
    for (const f of headerFrames(id, block, endStream, this.#peerMaxFrame)) this.#queue(f);
  }

  #queue(b: Uint8Array): void {
    this.#out.push(b);
    this.#scheduleFlush();
  }

  /** A frame we owe the peer for one it sent (an ACK, a stream error): counted until the peer reads. */
  #queueControl(b: Uint8Array): void {
    if (++this.counters.queuedControlFrames > this.#limits.maxQueuedControlFrames) {
      throw new ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `Over ${this.#limits.maxQueuedControlFrames} control frames queued for a peer that does not read`,
      );
    }
    this.#queue(b);
  }

  /** One more stream the peer reset or had refused; over the rate, the connection ends (rapid reset). */
  #spendReset(): void {
    if (!this.#resets.take()) {
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "Too many streams reset or refused (rapid reset)");
    }
  }

  /** Runs a callback; a throw resets its stream (INTERNAL_ERROR) and is counted, never ending the connection. */
  #guard(s: Stream | undefined, f: () => void): void {
    try {
      f();
    } catch (e) {
      this.counters.handlerErrors++;
      try {
        this.#options.onHandlerError?.(e);
      } catch {
        // the reporter itself failed: the count stays
      }
      if (s && !s.closed) {
        this.resetStream(s, ErrorCode.INTERNAL_ERROR, `handler error: ${errorMessage(e)}`);
      }
    }
  }

  #scheduleFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    if (this.#options.flush === "io") setImmediate(this.#flushNow);
    else queueMicrotask(this.#flushNow);
  }

  readonly #flushNow = () => this.#flush();

  #flush(): void {
    this.#flushQueued = false;
    if (this.#sending.size > 0) this.#frameData();
    if (this.#out.length === 0) return;
    // Everything written before was taken: the control frames owed since are no longer piling up.
    if (this.#transport.buffered === 0) this.counters.queuedControlFrames = 0;
    // Always a new buffer: DATA payloads are the writers' chunks, and a transport may keep what it is given.
    const out = concat(this.#out);
    this.#out = [];
    this.#transport.write(out);
    if (!this.#closed && this.#transport.buffered > this.#limits.maxBufferedOutput) {
      this.destroy(
        ErrorCode.ENHANCE_YOUR_CALM,
        `Over ${this.#limits.maxBufferedOutput} bytes queued for a peer that does not read`,
      );
    }
  }

  /** Cuts queued payload into DATA frames as the windows and the transport allow. */
  #frameData(): void {
    // Bytes the transport may still take this flush; transportDrained() brings the rest back.
    let budget = this.#highWater - this.#transport.buffered;
    for (const s of this.#sending) {
      if (budget <= 0) return;
      const hadQueued = s.queued > 0;
      while (s.queued > 0) {
        const room = Math.min(s.sendWindow, this.#sendConnWindow, this.#peerMaxFrame);
        if (room <= 0) break;
        const n = Math.min(room, s.queued);
        const last = n === s.queued && s.endQueued && !s.endTrailers;
        s.takeDataFrame(n, last, this.#out);
        s.sendWindow -= n;
        this.#sendConnWindow -= n;
        budget -= n;
        if (budget <= 0) break;
      }
      if (s.queued === 0) {
        this.#sending.delete(s);
        if (s.endQueued && (s.state === "open" || s.state === "half-closed (remote)")) {
          if (s.endTrailers) this.#queueHeaderBlock(s.id, this.#encoder.encode(s.endTrailers), true);
          else if (!hadQueued) this.#out.push(frame(FrameType.DATA, Flag.END_STREAM, s.id));
          this.#localEnded(s);
        } else if (hadQueued) this.#guard(s, () => s.onDrain?.());
      } else if (this.#sendConnWindow <= 0) return;
    }
  }

  // ------------------------------------------------------------------------------------------------ lifecycle

  #localEnded(s: Stream): void {
    if (s.state === "half-closed (remote)") return this.#closeStream(s, 0, "", "closed");
    s.setState("half-closed (local)", "END_STREAM sent");
    if (this.#role === "server" && !s.endPending) {
      // A complete response ends the exchange: the client may stop sending (RFC 9113 section 8.1, NO_ERROR).
      this.#queue(rstStreamFrame(s.id, ErrorCode.NO_ERROR));
      this.#closeStream(s, 0, "");
    }
  }

  #remoteEnded(s: Stream): void {
    const both = s.state === "half-closed (local)";
    if (!both) s.setState("half-closed (remote)", "END_STREAM received");
    this.#guard(s, () => s.onEnd?.());
    if (both) this.#closeStream(s, 0, "", "closed");
  }

  /**
   * Closes a stream: `next` is "closed" after END_STREAM both ways, "closed (reset)" after the peer's RST_STREAM,
   * "closed (reset sent)" otherwise (our RST_STREAM, a refusal, the connection's end). `reason` goes to onClose.
   */
  #closeStream(s: Stream, code: number, reason: string, next: ClosedState = "closed (reset sent)"): void {
    if (s.closed) return;
    const started = s.state !== "idle";
    // A server's stream that ends without the request's END_STREAM: the rest of the request is still checked.
    const early = next === "closed (reset sent)" && code === 0 && !s.receiveEnded && this.#role === "server";
    s.setState(next, reason || (next === "closed" ? "END_STREAM both ways" : errorName(code)));
    if (started) {
      const contentLeft = s.contentLength === undefined ? undefined : s.contentLength - s.dataReceived;
      this.#closedStreams.add(s.id, next, early ? { contentLeft } : undefined);
    }
    if (code !== 0) s.resetCode = code;
    s.queue = [];
    s.queued = 0;
    this.#sending.delete(s);
    if (this.#streams.delete(s.id) && started && this.#isLocal(s.id)) this.#localOpen--;
    if (!started) {
      const i = this.#waitingToStart.indexOf(s);
      if (i >= 0) this.#waitingToStart.splice(i, 1);
    }
    // What the reader had not consumed goes back to the connection window.
    this.#connToCredit += s.unconsumed;
    s.unconsumed = 0;
    this.#guard(s, () => s.onClose?.(code, reason));
    this.#startWaiting();
    if (this.#goaway && this.#streams.size === 0) this.#end(this.#goaway);
  }

  #startWaiting(): void {
    while (this.#waitingToStart.length > 0 && this.#localOpen < this.#peerMaxStreams && this.usable) {
      this.#start(this.#waitingToStart.shift()!);
    }
  }

  #streamError(id: number, code: number): void {
    this.#queueControl(rstStreamFrame(id, code));
    const s = this.#streams.get(id);
    if (s) this.#closeStream(s, code, `stream error ${errorName(code)}`);
    else if (!this.#isLocal(id) && !this.#closedStreams.has(id)) {
      // A stream refused or malformed at its HEADERS: what the peer sent before our RST_STREAM reached it is ignored.
      this.#closedStreams.add(id, "closed (reset sent)");
    }
  }

  /** Frames other than HEADERS on a stream that was never opened are a connection error (section 5.1). */
  #checkNotIdle(id: number): void {
    const idle = this.#isLocal(id) ? id >= this.#nextStreamId : id > this.#lastPeerStream;
    if (idle) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `Frame on idle stream ${id}`);
  }

  #isLocal(id: number): boolean {
    return (id & 1) === (this.#role === "client" ? 1 : 0);
  }

  #end(err: ConnectionError, flush = true): void {
    if (this.#closed) return;
    this.#closed = err;
    this.#goaway ??= err;
    const code = err.code === ErrorCode.NO_ERROR ? -1 : err.code;
    for (const s of [...this.#streams.values(), ...this.#waitingToStart]) this.#closeStream(s, code, err.message);
    this.#pings.failAll(err);
    if (flush) this.#flush();
    this.#out = [];
    this.#transport.close();
    this.#resolveClosed(err);
  }
}
