/**
 * A stream's states (RFC 9113 section 5.1) and the one check every change of state goes through, for open streams
 * (`Stream.setState`) and for the closed ones a connection remembers (`ClosedStreams`). What a frame on a closed
 * stream means is decided here, sans-IO: `ClosedStreams` answers with a disposition and the connection acts on it.
 */
import { checkTrailers } from "./fields.ts";
import type { HeaderList } from "./hpack.ts";

/**
 * Section 5.1's states, with "closed" told apart by how the stream got there, because a frame that comes after it
 * means something different in each (section 5.1, "closed"). No "reserved" states: tp refuses server push.
 */
export type StreamState =
  /** A client's stream whose HEADERS have not gone out yet (queued past the peer's MAX_CONCURRENT_STREAMS). */
  | "idle"
  | "open"
  /** We sent END_STREAM. */
  | "half-closed (local)"
  /** The peer sent END_STREAM. */
  | "half-closed (remote)"
  /** We sent RST_STREAM (or refused the stream): frames the peer sent before it read ours are ignored for a while. */
  | "closed (reset sent)"
  /** Both ends know the stream was reset: a frame on it is a stream error STREAM_CLOSED. */
  | "closed (reset)"
  /** END_STREAM both ways: a frame on it is a connection error STREAM_CLOSED. */
  | "closed";

export type ClosedState = "closed (reset sent)" | "closed (reset)" | "closed";

/**
 * How long frames that cross our RST_STREAM are ignored (section 5.1: an endpoint "MAY choose to limit the period
 * over which it ignores frames and treat frames that arrive after this time as being in error"). The peer may have
 * sent up to a stream window (1 MiB) before it read our RST_STREAM; 5 s is a round trip through a loaded API server's
 * port-forward with that window in flight. A frame later than that costs one RST_STREAM STREAM_CLOSED on a stream
 * that is gone anyway, never the connection.
 */
export const RESET_GRACE_MS = 5_000;

/** Closed streams remembered, oldest forgotten first: section 5.1 lets an endpoint bound this state. */
export const CLOSED_KEPT = 1024;

export function isClosed(state: StreamState): state is ClosedState {
  return state === "closed" || state === "closed (reset sent)" || state === "closed (reset)";
}

/**
 * Whether `from=>next` is one of section 5.1's transitions; an illegal one is a bug in this module, so the caller
 * throws a TypeError naming it.
 */
export function allowed(from: StreamState, next: StreamState): boolean {
  switch (from) {
    case "idle": // send HEADERS (with END_STREAM, straight on to half-closed); refused or dropped before its HEADERS
      return next === "open" || next === "closed (reset sent)";
    case "open": // END_STREAM either way; RST_STREAM either way
      return next === "half-closed (local)" || next === "half-closed (remote)" || next === "closed (reset sent)" ||
        next === "closed (reset)";
    case "half-closed (local)": // the peer's END_STREAM; RST_STREAM either way
    case "half-closed (remote)": // our END_STREAM; RST_STREAM either way
      return next === "closed" || next === "closed (reset sent)" || next === "closed (reset)";
    case "closed (reset sent)": // the peer's own RST_STREAM, or RESET_GRACE_MS passed
      return next === "closed (reset)";
    case "closed": // a RST_STREAM after END_STREAM both ways: what follows it is a stream error, as after any reset
      return next === "closed (reset)";
    case "closed (reset)":
      return false;
    default: {
      const never: never = from;
      throw new TypeError(`Unknown stream state "${never}"`);
    }
  }
}

/** Throws a TypeError on an illegal transition; logs `stream N A=>B (why)` when a log is given. */
export function checkTransition(
  id: number,
  from: StreamState,
  next: StreamState,
  why: string,
  log: ((line: string) => void) | undefined,
): void {
  if (!allowed(from, next)) throw new TypeError(`Illegal HTTP/2 stream transition ${from}=>${next} (${why})`);
  log?.(`h2 stream ${id} ${from}=>${next} (${why})`);
}

/** What the connection does with a frame on a closed stream. */
export type LateFrame =
  /** Crossed our RST_STREAM: dropped. */
  | "ignore"
  /** A stream error STREAM_CLOSED (RST_STREAM back). */
  | "stream-closed"
  /** The rest of a request answered early is malformed: a stream error PROTOCOL_ERROR, counted. */
  | "malformed"
  /** A connection error STREAM_CLOSED (GOAWAY). */
  | "connection-closed";

interface ClosedStream {
  state: ClosedState;
  /** When it was closed (the connection's clock, ms). */
  since: number;
  /**
   * We ended the exchange with RST_STREAM NO_ERROR after a complete response (section 8.1): what the peer still
   * sends is checked as the rest of its request (content-length, trailers) though not delivered.
   */
  early: { contentLeft: number | undefined } | undefined;
}

/** The closed streams a connection remembers (at most CLOSED_KEPT), and what a late frame on one means. */
export class ClosedStreams {
  readonly #streams = new Map<number, ClosedStream>();

  constructor(readonly now: () => number, readonly log?: (line: string) => void) {}

  has(id: number): boolean {
    return this.#streams.has(id);
  }

  get size(): number {
    return this.#streams.size;
  }

  /** A stream closed in `state` (its own transition to it was checked already). */
  add(id: number, state: ClosedState, early?: { contentLeft: number | undefined }): void {
    this.#streams.set(id, { state, since: this.now(), early });
    if (this.#streams.size > CLOSED_KEPT) this.#streams.delete(this.#streams.keys().next().value!);
  }

  /** RST_STREAM from the peer on a stream closed here: what it sends after that is an error, even if ours crossed it. */
  peerReset(id: number): void {
    const c = this.#streams.get(id);
    if (!c || c.state === "closed (reset)") return;
    this.#set(id, c, "closed (reset)", "RST_STREAM received");
  }

  /** HEADERS on a closed stream; undefined when it is not remembered. */
  headers(id: number, endStream: boolean, headers: HeaderList): LateFrame | undefined {
    const c = this.#get(id);
    if (!c) return undefined;
    switch (c.state) {
      case "closed (reset sent)":
        // Late trailers of a request we answered early must still be trailers.
        if (c.early && (!endStream || checkTrailers(headers) !== undefined)) {
          c.early = undefined;
          return "malformed";
        }
        return "ignore";
      case "closed (reset)":
        return "stream-closed";
      case "closed":
        return "connection-closed";
    }
  }

  /** DATA of `length` bytes (padding excluded) on a closed stream; undefined when it is not remembered. */
  data(id: number, endStream: boolean, length: number): LateFrame | undefined {
    const c = this.#get(id);
    if (!c) return undefined;
    switch (c.state) {
      case "closed (reset sent)": {
        const left = c.early?.contentLeft;
        if (left === undefined) return "ignore";
        c.early!.contentLeft = left - length;
        if (left - length < 0 || (endStream && left - length !== 0)) {
          c.early = undefined;
          return "malformed";
        }
        return "ignore";
      }
      case "closed (reset)":
        return "stream-closed";
      case "closed":
        return "connection-closed";
    }
  }

  /** The record, moved on to "closed (reset)" once RESET_GRACE_MS passed since our RST_STREAM. */
  #get(id: number): ClosedStream | undefined {
    const c = this.#streams.get(id);
    if (c?.state === "closed (reset sent)" && this.now() - c.since > RESET_GRACE_MS) {
      this.#set(id, c, "closed (reset)", `no late frames ${RESET_GRACE_MS} ms after our RST_STREAM`);
    }
    return c;
  }

  #set(id: number, c: ClosedStream, next: ClosedState, why: string): void {
    checkTransition(id, c.state, next, why, this.log);
    c.state = next;
    c.early = undefined;
    c.since = this.now();
  }
}
