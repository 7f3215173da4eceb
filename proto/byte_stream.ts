/**
 * A reliable, ordered byte stream with half-close and reset: what one tunnel stream carries for a TCP connection, and
 * what the volume mount's two ends (sshfs on the workstation, sftp-server beside the app) are bridged to.
 * `Tunnel` (proto/tunnel.ts) has this shape, so a tunnel stream plugs in as it is; `byte_stream_memory.ts` is an
 * in-memory pair for tests.
 */
export interface ByteStream {
  /** Next chunk; null after the peer's half-close; throws after a reset. */
  read(): Promise<Uint8Array | null>;
  /** Sends bytes (not kept after return); false = wait for drained() before writing more. */
  write(data: Uint8Array): boolean;
  /** Resolves when writing may go on (or the stream ended). */
  drained(): Promise<void>;
  /** Half-close: no more bytes from this side. */
  closeWrite(): void;
  /** Abort both directions. */
  reset(reason?: string): void;
}

/** Thrown by `read()` after a reset, by either side. */
export class ByteStreamResetError extends Error {
  override name = "ByteStreamResetError";
}
