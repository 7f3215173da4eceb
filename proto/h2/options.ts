/** What a Connection is given (a transport, options) and the error it ends with: the types its users import. */
import type { Limits } from "./limits.ts";
import type { Stream } from "./stream.ts";

/** Where a connection's bytes go. The connection calls `write` at most once per tick with everything it has. */
export interface Transport {
  write(bytes: Uint8Array): void;
  /** Bytes written and not yet taken by the peer's socket (for backpressure). */
  readonly buffered: number;
  close(): void;
}

export interface ConnectionOptions {
  /** Our stream receive window (SETTINGS_INITIAL_WINDOW_SIZE), default 1 MiB. */
  streamWindow?: number;
  /** Our connection receive window, default 32 MiB. */
  connectionWindow?: number;
  /** Our SETTINGS_MAX_FRAME_SIZE, default 128 KiB. */
  maxFrameSize?: number;
  /** Server: SETTINGS_MAX_CONCURRENT_STREAMS we allow, default 100,000. */
  maxConcurrentStreams?: number;
  /** Server: called with each new stream once its request headers arrived. */
  onStream?: (stream: Stream) => void;
  /** Stop framing DATA while the transport holds this many bytes (default 1 MiB). */
  transportHighWater?: number;
  /** What the peer may make us hold or do (limits.ts has the defaults and where each comes from). */
  limits?: Partial<Limits>;
  /** The clock for rate limits and the closed streams' grace, in ms (default performance.now); tests pass a fake one. */
  now?: () => number;
  /** A callback threw: its stream was reset (INTERNAL_ERROR), the connection goes on. */
  onHandlerError?: (error: unknown) => void;
  /**
   * When to write what this tick's callbacks queued: "microtask" (default: at the end of the current callback) or
   * "io" (after every I/O callback of this turn of the event loop, with `setImmediate`: frames queued by callbacks of
   * several sockets that became readable together, say a destination's data and its FIN, go out in one write, and
   * the peer wakes once for them).
   */
  flush?: "microtask" | "io";
  /** Each stream's changes of state, `h2 stream N A=>B (why)` (debugging; off by default). */
  log?: (line: string) => void;
}

/** Why a connection ended: a GOAWAY either way, the transport closing, or an error. */
export class ConnectionError extends Error {
  override name = "ConnectionError";
  constructor(readonly code: number, message: string) {
    super(message);
  }
}
