/**
 * The bytes of a frame that arrived in pieces. Appending grows one buffer by doubling, so a frame sent one byte per
 * write costs copying linear in its size, not quadratic (each read joined to all before it was, before).
 */
export class InputBuffer {
  #buf = new Uint8Array(0);
  #len = 0;
  /** Bytes copied into the buffer so far (appends and moves). */
  copied = 0;

  get length(): number {
    return this.#len;
  }

  /** The held bytes (a view, valid until the next call). */
  get bytes(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }

  append(b: Uint8Array): void {
    const need = this.#len + b.length;
    if (need > this.#buf.length) {
      const grown = new Uint8Array(Math.max(need, this.#buf.length * 2, 1024));
      grown.set(this.#buf.subarray(0, this.#len));
      this.copied += this.#len;
      this.#buf = grown;
    }
    this.#buf.set(b, this.#len);
    this.#len = need;
    this.copied += b.length;
  }

  /** Drops the first `n` held bytes. */
  consume(n: number): void {
    if (n <= 0) return;
    if (n >= this.#len) return this.clear();
    this.#buf.copyWithin(0, n, this.#len);
    this.copied += this.#len - n;
    this.#len -= n;
  }

  /** Forgets everything, and the memory too. */
  clear(): void {
    this.#len = 0;
    if (this.#buf.length > 64 * 1024) this.#buf = new Uint8Array(0);
  }
}
