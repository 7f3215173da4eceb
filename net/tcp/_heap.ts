/** A binary min-heap of (deadline, item) pairs in parallel arrays: the endpoint's timer queue. */
export class DeadlineHeap<T> {
  readonly #at: number[] = [];
  readonly #items: T[] = [];

  get size(): number {
    return this.#at.length;
  }

  /** The earliest deadline, or Infinity. */
  peek(): number {
    return this.#at.length === 0 ? Number.POSITIVE_INFINITY : this.#at[0]!;
  }

  push(at: number, item: T): void {
    const a = this.#at, it = this.#items;
    let i = a.length;
    a.push(at);
    it.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= at) break;
      a[i] = a[p]!;
      it[i] = it[p]!;
      i = p;
    }
    a[i] = at;
    it[i] = item;
  }

  /** Removes the earliest pair and returns its item; `peek()` first to see its deadline. */
  pop(): T | undefined {
    const a = this.#at, it = this.#items;
    if (a.length === 0) return undefined;
    const top = it[0];
    const lastAt = a.pop()!;
    const lastItem = it.pop()!;
    const n = a.length;
    if (n > 0) {
      let i = 0;
      while (true) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const c = l + 1 < n && a[l + 1]! < a[l]! ? l + 1 : l;
        if (a[c]! >= lastAt) break;
        a[i] = a[c]!;
        it[i] = it[c]!;
        i = c;
      }
      a[i] = lastAt;
      it[i] = lastItem;
    }
    return top;
  }
}
