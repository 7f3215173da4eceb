/**
 * A min-heap of (deadline, item): the router's timer queue. Entries are never removed early; an item whose
 * deadline changed is pushed again and the stale entry is skipped when it surfaces (the owner checks).
 */
export class Deadlines<T> {
  #times: number[] = [];
  #items: T[] = [];

  get size(): number {
    return this.#times.length;
  }

  /** The earliest deadline, or Infinity. */
  peek(): number {
    return this.#times.length ? this.#times[0]! : Number.POSITIVE_INFINITY;
  }

  /** The item with the earliest deadline, or undefined. */
  peekItem(): T | undefined {
    return this.#items[0];
  }

  push(at: number, item: T): void {
    const times = this.#times;
    const items = this.#items;
    let i = times.length;
    times.push(at);
    items.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (times[p]! <= at) break;
      times[i] = times[p]!;
      items[i] = items[p]!;
      i = p;
    }
    times[i] = at;
    items[i] = item;
  }

  /** Removes and returns the earliest item if its deadline is at or before `now`. */
  popDue(now: number): T | undefined {
    const times = this.#times;
    if (!times.length || times[0]! > now) return undefined;
    const items = this.#items;
    const top = items[0]!;
    const lastT = times.pop()!;
    const lastI = items.pop()!;
    const n = times.length;
    if (n) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && times[r]! < times[l]! ? r : l;
        if (times[c]! >= lastT) break;
        times[i] = times[c]!;
        items[i] = items[c]!;
        i = c;
      }
      times[i] = lastT;
      items[i] = lastI;
    }
    return top;
  }
}
