/**
 * A byte ring buffer that grows on demand up to a hard limit: the send buffer (bytes written by the owner and
 * not yet acknowledged) and the receive buffer (bytes received and not yet consumed, plus out-of-order data
 * parked at their offset beyond the readable part).
 *
 * Offsets are logical: 0 is the oldest byte held. Copies use `Uint8Array.set` (at most two per call, one at the
 * wrap point); nothing loops per byte. Memory is allocated at the first write, starts small and doubles, so an idle
 * connection costs little.
 */
const NOTHING = new Uint8Array(0);

export class ByteRing {
  /** Nothing is allocated until the first write: most connections of a proxy sit idle. */
  #buf: Uint8Array = NOTHING;
  #head = 0;
  #len = 0;
  readonly #initial: number;
  readonly limit: number;

  constructor(limit: number, initial = 4096) {
    if (!(limit > 0)) throw new RangeError(`Ring limit must be positive, got ${limit}`);
    this.limit = limit;
    this.#initial = Math.max(1, Math.min(initial, limit));
  }

  /** Bytes held (from offset 0). */
  get length(): number {
    return this.#len;
  }

  /** Bytes that can still be appended before the limit. */
  get free(): number {
    return this.limit - this.#len;
  }

  /** Bytes allocated now. */
  get capacity(): number {
    return this.#buf.length;
  }

  /** Appends as much of `src` as fits; returns how many bytes were taken. */
  append(src: Uint8Array): number {
    const n = Math.min(src.length, this.limit - this.#len);
    if (n === 0) return 0;
    this.writeAt(this.#len, n === src.length ? src : src.subarray(0, n));
    this.#len += n;
    return n;
  }

  /**
   * Writes `src` at logical `offset`, which may lie beyond `length` (out-of-order data); `length` is unchanged.
   * `offset + src.length` must not exceed `limit`.
   */
  writeAt(offset: number, src: Uint8Array): void {
    const end = offset + src.length;
    if (end > this.limit) throw new RangeError(`Ring write to ${end} exceeds limit ${this.limit}`);
    if (end > this.#buf.length) this.#grow(end);
    const cap = this.#buf.length;
    let pos = this.#head + offset;
    if (pos >= cap) pos -= cap;
    const first = Math.min(src.length, cap - pos);
    this.#buf.set(first === src.length ? src : src.subarray(0, first), pos);
    if (first < src.length) this.#buf.set(src.subarray(first), 0);
  }

  /** Marks `n` more bytes (already placed with `writeAt`) as held. */
  extend(n: number): void {
    this.#len += n;
  }

  /** The longest contiguous run of held bytes starting at `offset`, at most `max` long (shorter at the wrap). */
  peek(offset: number, max: number): Uint8Array {
    const cap = this.#buf.length;
    let pos = this.#head + offset;
    if (pos >= cap) pos -= cap;
    const n = Math.min(max, this.#len - offset, cap - pos);
    return this.#buf.subarray(pos, pos + Math.max(0, n));
  }

  /**
   * `n` held bytes from `offset` as one array: a view into the ring when contiguous, else copied into
   * `scratch` (which must hold `n` bytes).
   */
  slice(offset: number, n: number, scratch: () => Uint8Array): Uint8Array {
    const a = this.peek(offset, n);
    if (a.length === n) return a;
    const out = scratch().subarray(0, n);
    out.set(a);
    out.set(this.peek(offset + a.length, n - a.length), a.length);
    return out;
  }

  /** Copies up to `dst.length` bytes from offset 0 into `dst`; returns the count (does not consume). */
  copyOut(dst: Uint8Array): number {
    const a = this.peek(0, dst.length);
    dst.set(a);
    let n = a.length;
    if (n < dst.length && n < this.#len) {
      const b = this.peek(n, dst.length - n);
      dst.set(b, n);
      n += b.length;
    }
    return n;
  }

  /** Drops `n` bytes from the front. */
  advance(n: number): void {
    if (n > this.#len) throw new RangeError(`Cannot advance ring by ${n}, holding ${this.#len}`);
    // The head moves even when the ring empties: out-of-order bytes may be parked beyond it.
    this.#len -= n;
    this.#head += n;
    if (this.#head >= this.#buf.length) this.#head -= this.#buf.length;
  }

  /**
   * Gives the memory back when nothing is held and the ring is small (`maxCapacity` or less), so an idle connection
   * that once carried a few bytes costs nothing here; a bulk flow's grown ring is kept. The caller guarantees no
   * out-of-order bytes are parked.
   */
  releaseIfEmpty(maxCapacity: number): void {
    if (this.#len === 0 && this.#buf.length <= maxCapacity) {
      this.#buf = NOTHING;
      this.#head = 0;
    }
  }

  #grow(atLeast: number): void {
    let cap = Math.max(this.#buf.length, this.#initial);
    while (cap < atLeast) cap *= 2;
    cap = Math.min(cap, this.limit);
    const old = this.#buf;
    const next = new Uint8Array(cap);
    // Linearize everything allocated (held and parked out-of-order bytes alike).
    next.set(old.subarray(this.#head));
    next.set(old.subarray(0, this.#head), old.length - this.#head);
    this.#buf = next;
    this.#head = 0;
  }
}
