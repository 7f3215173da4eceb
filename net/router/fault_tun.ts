/**
 * A fault-injecting `TunDevice` that wraps another (this kernel has no netem): seeded loss, duplication,
 * reordering and delay, applied to packets both ways, between the device and the router. For tests and
 * experiments only; the daemon never uses it.
 *
 * Every packet is copied (the inner device's read buffers are reused), held for `delayMs` (plus a random extra for
 * a reordered one, so later packets overtake it), then delivered: inbound by `read`, outbound to the inner `write`.
 */
import { newTunStats, type TunDevice, type TunStats } from "../../ffi/tun.ts";

export interface FaultOptions {
  /** Seed of the pseudo-random sequence: the same seed gives the same faults for the same packets. */
  seed: number;
  /** Probability that a packet is lost (0..1). */
  loss?: number;
  /** Probability that a packet is delivered twice. */
  duplicate?: number;
  /** Probability that a packet is held longer, so that packets behind it overtake it. */
  reorder?: number;
  /** Delay added to every packet, each way, in milliseconds (default 0). */
  delayMs?: number;
}

export interface FaultCounters {
  lost: number;
  duplicated: number;
  reordered: number;
}

/** mulberry32: a small seeded generator of floats in [0, 1). */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Held {
  at: number;
  packet: Uint8Array;
}

/** Packets waiting for their time, in order of it (most arrive in order, so insertion is mostly an append). */
class DelayLine {
  readonly items: Held[] = [];
  add(at: number, packet: Uint8Array): void {
    const items = this.items;
    let i = items.length;
    while (i > 0 && items[i - 1]!.at > at) i--;
    items.splice(i, 0, { at, packet });
  }
  takeDue(now: number, max: number): Uint8Array[] {
    let n = 0;
    while (n < this.items.length && n < max && this.items[n]!.at <= now) n++;
    return this.items.splice(0, n).map((h) => h.packet);
  }
  get next(): number {
    return this.items.length ? this.items[0]!.at : Number.POSITIVE_INFINITY;
  }
}

export class FaultyTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly batchSize: number;
  readonly stats: TunStats = newTunStats();
  readonly faults: { inbound: FaultCounters; outbound: FaultCounters } = {
    inbound: { lost: 0, duplicated: 0, reordered: 0 },
    outbound: { lost: 0, duplicated: 0, reordered: 0 },
  };

  readonly #inner: TunDevice;
  readonly #random: () => number;
  readonly #o: Required<Omit<FaultOptions, "seed">>;
  readonly #in = new DelayLine();
  readonly #out = new DelayLine();
  #pumping: Promise<void> | undefined;
  #innerDone = false;
  #closed = false;
  #wakeReader: (() => void) | undefined;
  #outTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(inner: TunDevice, options: FaultOptions) {
    this.#inner = inner;
    this.name = inner.name;
    this.mtu = inner.mtu;
    this.batchSize = inner.batchSize;
    this.#random = generator(options.seed);
    this.#o = {
      loss: options.loss ?? 0,
      duplicate: options.duplicate ?? 0,
      reorder: options.reorder ?? 0,
      delayMs: options.delayMs ?? 0,
    };
  }

  /** Decides one packet's fate: copies scheduled on `line`. */
  #schedule(line: DelayLine, packet: Uint8Array, c: FaultCounters): void {
    const o = this.#o;
    if (this.#random() < o.loss) {
      c.lost++;
      return;
    }
    const now = performance.now();
    let at = now + o.delayMs;
    if (this.#random() < o.reorder) {
      c.reordered++;
      at += 1 + this.#random() * Math.max(2, o.delayMs / 2);
    }
    line.add(at, packet.slice());
    if (this.#random() < o.duplicate) {
      c.duplicated++;
      line.add(at + this.#random(), packet.slice());
    }
  }

  #pump(): Promise<void> {
    return this.#pumping ??= (async () => {
      for (let i = 0; i < Number.MAX_SAFE_INTEGER && !this.#closed; i++) {
        const packets = await this.#inner.read();
        if (packets.length === 0) break;
        for (const p of packets) this.#schedule(this.#in, p, this.faults.inbound);
        this.#wakeReader?.();
      }
      this.#innerDone = true;
      this.#wakeReader?.();
    })();
  }

  async read(): Promise<Uint8Array[]> {
    void this.#pump();
    for (let i = 0; i < Number.MAX_SAFE_INTEGER; i++) {
      if (this.#closed) return [];
      const now = performance.now();
      const due = this.#in.takeDue(now, this.batchSize);
      if (due.length) {
        this.stats.readPackets += due.length;
        return due;
      }
      if (this.#innerDone && this.#in.items.length === 0) return [];
      const wait = this.#in.next - now;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wakeReader = resolve;
        if (Number.isFinite(wait)) timer = setTimeout(resolve, Math.max(0, wait));
      });
      clearTimeout(timer);
      this.#wakeReader = undefined;
    }
    return [];
  }

  write(packets: readonly Uint8Array[]): number {
    if (this.#closed) throw new TypeError(`${this.name}: write() called after close()`);
    for (const p of packets) this.#schedule(this.#out, p, this.faults.outbound);
    this.stats.writtenPackets += packets.length;
    this.#flushOut();
    return packets.length;
  }

  #flushOut(): void {
    if (this.#closed) return;
    const now = performance.now();
    for (let i = 0; i < 1_000_000; i++) {
      const due = this.#out.takeDue(now, this.batchSize);
      if (due.length === 0) break;
      try {
        this.#inner.write(due);
      } catch {
        this.stats.writeDrops += due.length;
      }
    }
    if (this.#outTimer !== undefined || this.#out.items.length === 0) return;
    this.#outTimer = setTimeout(() => {
      this.#outTimer = undefined;
      this.#flushOut();
    }, Math.max(0, this.#out.next - now));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#outTimer);
    this.#outTimer = undefined;
    this.#inner.close();
    this.#wakeReader?.();
  }
}
