/**
 * A session's budget of bytes the manager holds on its behalf (`SessionBuffer`), and each stream's share of it
 * (`BufferHold`). Sans-IO: it counts and says when to pause and when to resume; the stream runners own the sockets.
 *
 * What counts is what grows with what the workstation does not take: outbound bytes read from a destination and not
 * yet framed onto the connection (a stream's response queue), and a resumable stream's bytes kept until acknowledged.
 * One client that opens thousands of streams to fast sources and neither reads nor acknowledges would otherwise make
 * the manager hold streams x (256 KiB .. 4 MiB).
 *
 * Each stream has an allowance of its own (its floor), outside the budget: the budget counts what a stream holds
 * beyond it, and a stream holding less is never paused. So no stream starves behind others the workstation does not
 * read, and a resumable stream can always reach the next acknowledgement (the workstation acknowledges every 128 KiB:
 * the tails under that of many finished streams would otherwise fill the budget for good, waiting for acks that never
 * come, and hold up every other stream of the session).
 *
 * Once the session's counted bytes reach `limit`, each of its streams that reads (and holds its floor) pauses its
 * destination socket (its TCP window closes: nothing is dropped) and waits; when they fall below RESUME_FRACTION of
 * the limit, every waiting stream resumes at once. Each event is O(1) (an add, a release, a pause); a resume wakes the
 * streams that waited, each of which paused once since the last resume, so it costs O(1) per pause. One read of each
 * stream may be under way when the budget fills. So a session holds at most `limit` + for each stream its floor and
 * one read.
 */

/** Waiting streams resume once the session holds less than this share of its limit (hysteresis: resumes are rare). */
const RESUME_FRACTION = 3 / 4;

/**
 * 64 MiB: the tunnels of a workstation that reads keep this far below it (a stream holds up to 256 KiB while its
 * client catches up), the 256 sessions a manager admits could in the worst case hold 16 GiB but one session alone
 * cannot take a shared pod's memory, and 64 MiB is still 16 resumable streams' full 4 MiB windows, so the resumable
 * streams of a workstation whose link broke (read into their buffers during the grace period) resume intact unless
 * many were busy at once.
 */
export const DEFAULT_SESSION_BUFFER_BYTES = 64 << 20;

/** The floor of a stream whose queue the workstation takes as it reads: one read of node:net (64 KiB). */
export const STREAM_FLOOR_BYTES = 64 << 10;

export interface SessionBufferEvents {
  /** The session's held bytes reached the limit for the first time (once per session: a log line). */
  onFirstFull?(): void;
  /** A stream's reading paused because the session's budget was full (counted in /metrics). */
  onPause?(): void;
}

export class SessionBuffer {
  /** Bytes counted against the limit (beyond each stream's floor), and all the bytes the streams hold. */
  #held = 0;
  #total = 0;
  #waiting = new Set<BufferHold>();
  #reachedOnce = false;
  /** Times one of the session's streams paused its reading because the budget was full. */
  pauses = 0;
  readonly resumeBelow: number;

  constructor(readonly limit: number, readonly events: SessionBufferEvents = {}) {
    if (!(limit > 0)) throw new RangeError(`A session's buffer budget must be above zero, not ${limit}`);
    this.resumeBelow = Math.floor(limit * RESUME_FRACTION);
  }

  /** Bytes the session's streams hold beyond their floors: what the limit applies to. */
  get held(): number {
    return this.#held;
  }

  /** All the bytes the session's streams hold (their floors too). */
  get total(): number {
    return this.#total;
  }

  /** Whether a stream that just read should pause (if it holds its floor): the session holds its limit or more. */
  get full(): boolean {
    return this.#held >= this.limit;
  }

  /** Streams waiting for room. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /** A share for one stream, paused only once it holds `floor` bytes; `close()` it when the stream ends. */
  hold(floor = 0): BufferHold {
    return new BufferHold(this, floor);
  }

  /** @internal Called by a hold whose bytes changed by `total`, and `delta` of them beyond its floor. */
  changed(delta: number, total: number): void {
    this.#total += total;
    if (delta === 0) return;
    this.#held += delta;
    if (delta > 0) {
      if (!this.#reachedOnce && this.#held >= this.limit) {
        this.#reachedOnce = true;
        this.events.onFirstFull?.();
      }
      return;
    }
    if (this.#held < this.resumeBelow && this.#waiting.size > 0) {
      // Swapped first: a stream that resumes and finds the budget full again waits in the new set.
      const wake = this.#waiting;
      this.#waiting = new Set();
      for (const h of wake) h.wake();
    }
  }

  /** @internal */
  wait(h: BufferHold): void {
    if (this.#waiting.has(h)) return;
    this.#waiting.add(h);
    this.pauses++;
    this.events.onPause?.();
  }

  /** @internal */
  forget(h: BufferHold): void {
    this.#waiting.delete(h);
  }
}

/** One stream's share of its session's budget. */
export class BufferHold {
  #held = 0;
  #onRoom: (() => void) | undefined;
  #closed = false;

  constructor(readonly buffer: SessionBuffer, readonly floor: number) {}

  /** Bytes this stream holds. */
  get held(): number {
    return this.#held;
  }

  /** Whether a stream that just read pauses: the session's budget is full, and the stream holds its floor. */
  get full(): boolean {
    return this.buffer.full && this.#held >= this.floor;
  }

  add(n: number): void {
    if (this.#closed || n <= 0) return;
    this.#change(n);
  }

  /** The stream gave up `n` of its bytes (framed onto the connection, acknowledged); at most what it holds. */
  release(n: number): void {
    n = Math.min(n, this.#held);
    if (this.#closed || n <= 0) return;
    this.#change(-n);
  }

  #change(n: number): void {
    const before = Math.max(0, this.#held - this.floor);
    this.#held += n;
    this.buffer.changed(Math.max(0, this.#held - this.floor) - before, n);
  }

  /** Sets what the stream holds (for a queue whose size is read, not followed byte by byte). */
  set(n: number): void {
    if (n > this.#held) this.add(n - this.#held);
    else this.release(this.#held - n);
  }

  /**
   * The stream paused its reading for the budget: `onRoom` is called once, when the session's bytes fell below the
   * resume mark. Waiting again replaces the callback (a stream waits once).
   */
  waitForRoom(onRoom: () => void): void {
    if (this.#closed) return;
    this.#onRoom = onRoom;
    this.buffer.wait(this);
  }

  /** The stream no longer waits (it ended; what it counts may still be queued, and stays counted). */
  cancelWait(): void {
    this.#onRoom = undefined;
    this.buffer.forget(this);
  }

  /** @internal */
  wake(): void {
    const f = this.#onRoom;
    this.#onRoom = undefined;
    f?.();
  }

  /** The stream ended: what it held is released, and it waits no more. */
  close(): void {
    if (this.#closed) return;
    this.cancelWait();
    this.release(this.#held);
    this.#closed = true;
  }
}
