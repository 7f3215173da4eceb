/**
 * The router's connections in progress: TCP connections in SYN-HELD (the owner is dialing the cluster side) or
 * SYN-RECEIVED (the SYN-ACK went out, the app's ACK has not come back). Each one holds a tunnel stream or a dial, so
 * their number is bounded, like the in-flight connection attempts of gVisor's TCP forwarder (`maxInFlight` of
 * `tcp.NewForwarder`): a SYN flood cannot take every stream of the session.
 *
 * Fairness between destinations: the connections are grouped by the address they dial. When the table is full, a SYN
 * to a destination that holds at least two fewer connections in progress than the busiest one takes the place of the
 * busiest destination's oldest connection (which is reset); any other SYN is refused. So a flood at one address (or
 * a few) holds its share and no more, and connections to other destinations still get in. Those evictions are rate
 * limited (a token bucket on the caller's clock): an evicted connection's dial runs on at the manager until it ends,
 * so evictions at the rate of a flood spread over many addresses would take the streams the bound is there to save.
 *
 * Sans-IO: the caller passes the time; nothing here sends a packet.
 */

/** What to do with a new connection: take it, take it after resetting `evict`, or refuse it. */
export type Admission<T> = { admit: true; evict?: T } | { admit: false };

export interface InProgressOptions {
  /** Connections in progress at once. */
  max: number;
  /** Evictions allowed at once, then `evictionsPerSecond`. */
  evictionBurst: number;
  evictionsPerSecond: number;
}

interface Group<T> {
  readonly key: number | string;
  /** In the order they were admitted: the first is the oldest. */
  readonly items: Set<T>;
}

export class InProgress<T> {
  readonly max: number;
  readonly #groups = new Map<number | string, Group<T>>();
  readonly #groupOf = new Map<T, Group<T>>();
  /** Groups by their size (index), to find a largest one in O(1). */
  readonly #bySize: Set<Group<T>>[] = [];
  #largest = 0;
  readonly #burst: number;
  readonly #rate: number;
  #tokens: number;
  #refilledAt: number | undefined;

  constructor(options: InProgressOptions) {
    const { max, evictionBurst, evictionsPerSecond } = options;
    if (!(max >= 1 && evictionBurst >= 0 && evictionsPerSecond >= 0)) {
      throw new RangeError(`Invalid in-progress limits ${JSON.stringify(options)}`);
    }
    this.max = max;
    this.#burst = this.#tokens = evictionBurst;
    this.#rate = evictionsPerSecond;
  }

  get size(): number {
    return this.#groupOf.size;
  }

  /** Connections in progress to `key`. */
  count(key: number | string): number {
    return this.#groups.get(key)?.items.size ?? 0;
  }

  has(item: T): boolean {
    return this.#groupOf.has(item);
  }

  /**
   * Decides on a new connection to the destination `key` at `now` (ms). On `{ admit: true }` the caller `add`s it;
   * an `evict` is still in the table: the caller resets it (and `remove`s it as it closes).
   */
  admit(key: number | string, now: number): Admission<T> {
    if (this.size < this.max) return { admit: true };
    const mine = this.count(key);
    if (mine + 1 >= this.#largest || !this.#takeToken(now)) return { admit: false };
    const busiest = this.#bySize[this.#largest]!.values().next().value!;
    return { admit: true, evict: busiest.items.values().next().value! };
  }

  add(key: number | string, item: T): void {
    if (this.#groupOf.has(item)) throw new TypeError("The connection is in progress already");
    let g = this.#groups.get(key);
    if (g === undefined) {
      g = { key, items: new Set() };
      this.#groups.set(key, g);
    }
    this.#resize(g, () => g.items.add(item));
    this.#groupOf.set(item, g);
  }

  /** The connection is no longer in progress (established or closed); false if it was not in the table. */
  remove(item: T): boolean {
    const g = this.#groupOf.get(item);
    if (g === undefined) return false;
    this.#groupOf.delete(item);
    this.#resize(g, () => g.items.delete(item));
    if (g.items.size === 0) this.#groups.delete(g.key);
    return true;
  }

  /** Moves `g` to the size bucket it has after `change`, keeping `#largest` (a group only ever grows or shrinks by 1). */
  #resize(g: Group<T>, change: () => void): void {
    const before = g.items.size;
    change();
    const after = g.items.size;
    if (before > 0) this.#bySize[before]!.delete(g);
    if (after > 0) (this.#bySize[after] ??= new Set()).add(g);
    if (after > this.#largest) this.#largest = after;
    else if (before === this.#largest && this.#bySize[before]!.size === 0) this.#largest = after;
  }

  #takeToken(now: number): boolean {
    if (this.#refilledAt !== undefined && now > this.#refilledAt) {
      this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#refilledAt) * this.#rate / 1000);
    }
    this.#refilledAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }
}
