/**
 * What a peer may make one HTTP/2 connection hold or do, and the counters of what it tried. Every limit is nghttp2's
 * or Go's x/net/http2's for the same attack, each cited; a peer over one gets GOAWAY ENHANCE_YOUR_CALM (or the
 * error RFC 9113 names) and the connection ends.
 */

export interface Limits {
  /**
   * CONTINUATION frames after one HEADERS (CVE-2024-27316 class: zero-length CONTINUATIONs without END_HEADERS).
   * nghttp2's NGHTTP2_DEFAULT_MAX_CONTINUATIONS is 8.
   */
  maxContinuations: number;
  /** Entries in one SETTINGS frame (CVE-2020-11080 class). nghttp2's NGHTTP2_DEFAULT_MAX_SETTINGS is 32. */
  maxSettingsEntries: number;
  /**
   * Streams the peer may reset (RST_STREAM on an open stream) or have refused, as a token bucket: `resetBurst` at
   * once, then `resetRate` a second (CVE-2023-44487, rapid reset). nghttp2 1.57's defaults are 1000 and 33.
   */
  resetBurst: number;
  resetRate: number;
  /**
   * Control frames we queued in answer to the peer (SETTINGS and PING ACKs, RST_STREAMs) while it did not read
   * what we wrote before. Go's x/net/http2 closes at maxQueuedControlFrames, 10,000.
   */
  maxQueuedControlFrames: number;
  /**
   * Bytes the transport may hold for a peer that does not read (what its requests made us answer). DATA framing
   * stops at the transport's high-water mark (1 MiB by default) on its own, so only a peer that asks and never reads
   * gets here.
   */
  maxBufferedOutput: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = {
  maxContinuations: 8,
  maxSettingsEntries: 32,
  resetBurst: 1000,
  resetRate: 33,
  maxQueuedControlFrames: 10_000,
  maxBufferedOutput: 4 << 20,
};

/** What a connection counted: drops and refusals, for tests and diagnostics. */
export interface ConnectionCounters {
  /** Bytes copied to reassemble frames that arrived in pieces (stays linear in the bytes received). */
  inputCopied: number;
  /** Streams the peer reset while open. */
  peerResets: number;
  /** Streams refused (REFUSED_STREAM): over MAX_CONCURRENT_STREAMS, or after GOAWAY. */
  refusedStreams: number;
  /** Control frames queued since the peer last took everything we wrote. */
  queuedControlFrames: number;
  /** Callbacks (onStream, onData, ...) that threw: each reset its own stream only. */
  handlerErrors: number;
  /** Frames on streams that had closed, ignored or answered with STREAM_CLOSED. */
  closedStreamFrames: number;
  /** Requests (or responses) reset as malformed (RFC 9113 section 8.1.1). */
  malformed: number;
}

export function newCounters(): ConnectionCounters {
  return {
    inputCopied: 0,
    peerResets: 0,
    refusedStreams: 0,
    queuedControlFrames: 0,
    handlerErrors: 0,
    closedStreamFrames: 0,
    malformed: 0,
  };
}

/** A token bucket on an injected clock (ms): `take()` is false once the burst and the rate are used up. */
export class TokenBucket {
  #tokens: number;
  #last: number;

  constructor(readonly burst: number, readonly perSecond: number, readonly now: () => number) {
    this.#tokens = burst;
    this.#last = now();
  }

  take(): boolean {
    const t = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#last) / 1000) * this.perSecond);
    this.#last = t;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
