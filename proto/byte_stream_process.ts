/**
 * Bridges a child process's stdin and stdout to a ByteStream: the stream's bytes go to the process's stdin and its
 * stdout goes to the stream, with backpressure both ways (the next stream read waits for the pipe write; stdout is not
 * read while the stream asks to wait for `drained()`). Used for sftp-server beside the app and for sshfs on the
 * workstation, each speaking SFTP on its stdin/stdout.
 *
 * Ends:
 * - the peer half-closes: the process's stdin is closed (SFTP programs exit at the end of their input);
 * - the process exits: its stdout ends, and the stream is half-closed (exit code 0) or reset (any other end, the
 *   reason naming the process and its code or signal);
 * - the stream is reset: the process is killed (SIGTERM) or only sees the end of its input, per `onReset`; its
 *   stdout is still read (and dropped) so that it can never block on a full pipe.
 *
 * stderr goes to `log` line by line, bounded: long lines are cut, and after `maxLogLines` lines the rest are counted.
 */
import type { ByteStream } from "./byte_stream.ts";
import { errorMessage } from "../base/error_message.ts";

export interface ProcessBridgeOptions {
  /** Names the process in a reset reason: `sftp-server exited with code 1`. */
  name: string;
  /** What a reset of the stream does to the process: SIGTERM ("kill") or only the end of its stdin ("close-stdin"). */
  onReset: "kill" | "close-stdin";
  /** One stderr line (without its newline). */
  log?: (line: string) => void;
  /** stderr lines passed to `log` before the rest are only counted. Default 100. */
  maxLogLines?: number;
}

export interface ProcessBridgeEnd {
  status: Deno.CommandStatus;
  /** How the stream ended on this side: half-closed after a clean exit, or reset (by either side). */
  stream: "closed" | "reset";
  /** Why, in words: "sftp-server exited with code 0", "stream reset: ...". */
  reason: string;
  /** Bytes from the stream to stdin, and from stdout to the stream. */
  bytesIn: number;
  bytesOut: number;
  /** stdout bytes read after the stream ended, and stream bytes read after stdin closed: counted, not delivered. */
  bytesDropped: number;
  /** stderr lines not passed to `log` (over the limit). */
  logLinesDropped: number;
}

/** Longest stderr line passed to `log`; the rest of the line is dropped. */
export const MAX_LOG_LINE = 1000;

/** How a process ended, in words. */
export function describeExit(name: string, s: Deno.CommandStatus): string {
  return s.signal ? `${name} was killed by ${s.signal}` : `${name} exited with code ${s.code}`;
}

/** The process must have been spawned with stdin, stdout and stderr "piped". Resolves when it has exited. */
export function bridgeProcess(
  child: Deno.ChildProcess,
  stream: ByteStream,
  opts: ProcessBridgeOptions,
): Promise<ProcessBridgeEnd> {
  return new ProcessBridge(child, stream, opts).run();
}

class ProcessBridge {
  #resetReason: string | undefined;
  #exited = false;
  #bytesIn = 0;
  #bytesOut = 0;
  #bytesDropped = 0;
  #logLinesDropped = 0;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #stdinClosed = false;

  constructor(
    readonly child: Deno.ChildProcess,
    readonly stream: ByteStream,
    readonly opts: ProcessBridgeOptions,
  ) {
    this.#stdin = child.stdin.getWriter();
  }

  async run(): Promise<ProcessBridgeEnd> {
    const inbound = this.#inbound();
    const stderr = this.#stderr();
    await this.#outbound();
    const status = await this.child.status;
    this.#exited = true;
    let stream: "closed" | "reset";
    let reason: string;
    if (this.#resetReason !== undefined) {
      stream = "reset";
      reason = `stream reset: ${this.#resetReason}`;
    } else if (status.success) {
      stream = "closed";
      reason = describeExit(this.opts.name, status);
      this.stream.closeWrite();
    } else {
      stream = "reset";
      reason = describeExit(this.opts.name, status);
      this.stream.reset(reason);
    }
    // The inbound copy ends by itself once the stream does; a peer still writing after a clean exit has its bytes
    // read and dropped until its own end, so it never waits on a window nobody opens.
    await this.#closeStdin();
    await Promise.all([inbound, stderr]);
    return {
      status,
      stream,
      reason,
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      bytesDropped: this.#bytesDropped,
      logLinesDropped: this.#logLinesDropped,
    };
  }

  /**
   * Stream to stdin, one chunk at a time: the next chunk is read while this one is written (one chunk ahead, so a
   * reset is seen even while the pipe is full) and is not written before the pipe took this one.
   */
  async #inbound(): Promise<void> {
    let ahead = this.#readAhead();
    for (;;) {
      const chunk = await ahead;
      if (chunk === undefined) return; // reset
      if (chunk === null) {
        await this.#closeStdin();
        return;
      }
      ahead = this.#readAhead();
      if (this.#stdinClosed) {
        this.#bytesDropped += chunk.length;
        continue;
      }
      try {
        await this.#stdin.write(chunk);
        this.#bytesIn += chunk.length;
      } catch {
        // The process closed its stdin or exited, or a reset aborted the write: what follows is dropped; the
        // process's exit ends the stream.
        this.#stdinClosed = true;
        this.#bytesDropped += chunk.length;
      }
    }
  }

  /** The next chunk, null at the peer's half-close, undefined after a reset (which it reports at once). */
  async #readAhead(): Promise<Uint8Array | null | undefined> {
    try {
      return await this.stream.read();
    } catch (e) {
      this.#onReset(errorMessage(e));
      return undefined;
    }
  }

  /** stdout to the stream; waits for `drained()` when the stream asks. Returns at the end of stdout. */
  async #outbound(): Promise<void> {
    const reader = this.child.stdout.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        if (this.#resetReason !== undefined) {
          this.#bytesDropped += value.length;
          continue;
        }
        let more: boolean;
        try {
          more = this.stream.write(value);
          this.#bytesOut += value.length;
        } catch (e) {
          this.#onReset(errorMessage(e));
          this.#bytesDropped += value.length;
          continue;
        }
        if (!more) await this.stream.drained();
      }
    } finally {
      reader.releaseLock();
    }
  }

  async #stderr(): Promise<void> {
    const max = this.opts.maxLogLines ?? 100;
    let logged = 0;
    const emit = (line: string) => {
      if (logged < max && this.opts.log) {
        logged++;
        this.opts.log(line.length > MAX_LOG_LINE ? line.slice(0, MAX_LOG_LINE) + "..." : line);
      } else this.#logLinesDropped++;
    };
    let buf = "";
    let skipping = false; // inside a line already cut at MAX_LOG_LINE
    for await (const text of this.child.stderr.pipeThrough(new TextDecoderStream())) {
      buf += text;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        if (!skipping) emit(buf.slice(0, nl));
        skipping = false;
        buf = buf.slice(nl + 1);
      }
      if (buf.length > MAX_LOG_LINE) {
        if (!skipping) emit(buf);
        skipping = true;
        buf = "";
      }
    }
    if (buf.length > 0 && !skipping) emit(buf);
  }

  /** The stream was reset (by the peer, or seen on a write): stop delivering, and end the process per `onReset`. */
  #onReset(reason: string): void {
    if (this.#resetReason !== undefined) return;
    this.#resetReason = reason;
    void this.#closeStdin();
    if (this.opts.onReset === "kill" && !this.#exited) {
      try {
        this.child.kill("SIGTERM");
      } catch { /* already exited */ }
    }
  }

  async #closeStdin(): Promise<void> {
    if (this.#stdinClosed) return;
    this.#stdinClosed = true;
    // abort, not close: close would wait behind a write blocked on a full pipe.
    await this.#stdin.abort().catch(() => {});
  }
}
