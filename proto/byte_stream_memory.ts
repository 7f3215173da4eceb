/**
 * Two ByteStreams joined in memory, for tests: what one end writes the other reads. Like a tunnel stream, each
 * direction holds a bounded number of unread bytes (`write` returns false above `highWater`, and `drained()` waits
 * for the reader), `closeWrite` ends one direction after what was written, and `reset` on either end fails both ends'
 * reads. Options cut every write into pieces of seeded random sizes and hand each piece over after an awaited
 * `delay()`, so a test can check that nothing depends on chunk boundaries or on bytes arriving in the same tick.
 */
import { type ByteStream, ByteStreamResetError } from "./byte_stream.ts";

export interface MemoryPairOptions {
  /** Unread bytes per direction above which `write` returns false. Default 256 KiB (proto/tunnel.ts's). */
  highWater?: number;
  /** Cut each write into pieces of 1..maxPiece bytes (sizes from a seeded generator). Default: whole writes. */
  maxPiece?: number;
  /** Seed of the piece sizes. */
  seed?: number;
  /** Awaited before each piece is handed to the reader (e.g. one macrotask). Default: handed over at once. */
  delay?: () => Promise<void>;
}

const EOF = Symbol("eof");

/** One direction: the writer's pieces waiting for their delay, then the reader's queue. */
class Direction {
  pending: (Uint8Array | typeof EOF)[] = [];
  readable: (Uint8Array | typeof EOF)[] = [];
  /** Bytes written and not yet read. */
  buffered = 0;
  error: Error | undefined;
  writeClosed = false;
  pumping = false;
  readWaiter: (() => void) | undefined;
  drainWaiters: (() => void)[] = [];

  wakeReader(): void {
    const w = this.readWaiter;
    this.readWaiter = undefined;
    w?.();
  }

  wakeDrain(highWater: number): void {
    if (this.buffered >= highWater && !this.error) return;
    for (const w of this.drainWaiters.splice(0)) w();
  }

  fail(e: Error): void {
    if (this.error) return;
    this.error = e;
    this.pending = [];
    this.readable = [];
    this.buffered = 0;
    this.writeClosed = true;
    this.wakeReader();
    for (const w of this.drainWaiters.splice(0)) w();
  }
}

/** A seeded generator of piece sizes (xorshift32): the same seed cuts the same way. */
function pieceSizes(seed: number, max: number): () => number {
  let x = (seed | 0) || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return 1 + ((x >>> 0) % max);
  };
}

class MemoryEnd implements ByteStream {
  readonly #out: Direction;
  readonly #in: Direction;
  readonly #opts: Required<Omit<MemoryPairOptions, "delay" | "maxPiece">> & MemoryPairOptions;
  readonly #nextSize: (() => number) | undefined;

  constructor(out: Direction, inbound: Direction, opts: MemoryPairOptions, seed: number) {
    this.#out = out;
    this.#in = inbound;
    this.#opts = { highWater: 256 * 1024, seed, ...opts };
    this.#nextSize = opts.maxPiece ? pieceSizes(seed, opts.maxPiece) : undefined;
  }

  async read(): Promise<Uint8Array | null> {
    const d = this.#in;
    for (;;) {
      if (d.error) throw d.error;
      const c = d.readable.shift();
      if (c === EOF) {
        d.readable.unshift(EOF); // every later read sees the end too
        return null;
      }
      if (c) {
        d.buffered -= c.length;
        d.wakeDrain(this.#opts.highWater);
        return c;
      }
      await new Promise<void>((r) => (d.readWaiter = r));
    }
  }

  write(data: Uint8Array): boolean {
    const d = this.#out;
    if (d.writeClosed) throw new TypeError("Cannot write to a byte stream after closeWrite(), reset() or its end");
    if (data.length > 0) {
      const copy = new Uint8Array(data);
      d.buffered += copy.length;
      if (this.#nextSize) {
        for (let i = 0; i < copy.length;) {
          const n = Math.min(this.#nextSize(), copy.length - i);
          this.#enqueue(copy.subarray(i, i + n));
          i += n;
        }
      } else this.#enqueue(copy);
    }
    return d.buffered < this.#opts.highWater;
  }

  drained(): Promise<void> {
    const d = this.#out;
    if (d.buffered < this.#opts.highWater || d.error) return Promise.resolve();
    return new Promise((r) => d.drainWaiters.push(r));
  }

  closeWrite(): void {
    if (this.#out.writeClosed) return;
    this.#out.writeClosed = true;
    this.#enqueue(EOF);
  }

  reset(reason = "reset"): void {
    const e = new ByteStreamResetError(reason);
    this.#out.fail(e);
    this.#in.fail(e);
  }

  #enqueue(piece: Uint8Array | typeof EOF): void {
    const d = this.#out;
    if (!this.#opts.delay) {
      d.readable.push(piece);
      d.wakeReader();
      return;
    }
    d.pending.push(piece);
    if (!d.pumping) void this.#pump(this.#opts.delay);
  }

  /** Hands pending pieces to the reader one at a time, each after its delay. */
  async #pump(delay: () => Promise<void>): Promise<void> {
    const d = this.#out;
    d.pumping = true;
    try {
      while (d.pending.length > 0 && !d.error) {
        await delay();
        const p = d.pending.shift();
        if (p === undefined || d.error) break;
        d.readable.push(p);
        d.wakeReader();
      }
    } finally {
      d.pumping = false;
    }
  }
}

/** Two joined ends: `a.write` is read by `b.read`, and the other way round. */
export function memoryByteStreamPair(opts: MemoryPairOptions = {}): [ByteStream, ByteStream] {
  const ab = new Direction();
  const ba = new Direction();
  const seed = opts.seed ?? 1;
  return [new MemoryEnd(ab, ba, opts, seed), new MemoryEnd(ba, ab, opts, seed + 1)];
}
