/**
 * An in-memory `TunDevice`: two queues instead of a kernel, for router and stack tests without root.
 *
 * The test plays the machine's programs: `inject` puts inbound packets where the router's `read` finds them, and
 * `takeWritten` / `waitWritten` return the outbound packets the router wrote.
 */
import { newTunStats, type TunDevice, type TunStats } from "./tun.ts";

export interface MemoryTunOptions {
  name?: string;
  mtu?: number;
  batchSize?: number;
}

export class MemoryTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly batchSize: number;
  readonly stats: TunStats = newTunStats();

  readonly #inbound: Uint8Array[] = [];
  readonly #outbound: Uint8Array[] = [];
  #wakeReader: (() => void) | undefined;
  #wakeWriter: (() => void) | undefined;
  #reading = false;
  #closed = false;

  constructor(options: MemoryTunOptions = {}) {
    this.name = options.name ?? "mem0";
    this.mtu = options.mtu ?? 1500;
    this.batchSize = options.batchSize ?? 128;
  }

  /** True once `close` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Queues inbound packets (copies) for `read`, as if programs on the machine had sent them. */
  inject(...packets: Uint8Array[]): void {
    if (this.#closed) throw new TypeError(`${this.name}: inject() called after close()`);
    for (const p of packets) this.#inbound.push(p.slice());
    this.#wakeReader?.();
  }

  /** Removes and returns every outbound packet written so far. */
  takeWritten(): Uint8Array[] {
    return this.#outbound.splice(0);
  }

  /**
   * Waits until at least `count` outbound packets were written, then removes and returns them all. Rejects after
   * `timeoutMs` (default 1000) with an error naming how many arrived, so a broken router fails a test fast.
   */
  async waitWritten(count = 1, timeoutMs = 1000): Promise<Uint8Array[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.#outbound.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `${this.name}: waited ${timeoutMs} ms for ${count} written packets, got ${this.#outbound.length}`,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wakeWriter = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.#wakeWriter = undefined;
    }
    return this.takeWritten();
  }

  async read(): Promise<Uint8Array[]> {
    if (this.#reading) throw new TypeError(`${this.name}: read() called while another read() is pending`);
    this.#reading = true;
    try {
      // Always wait a macrotask, like the kernel device's poll(): a reading loop cannot starve timers.
      await new Promise<void>((resolve) => setTimeout(resolve, 0));
      while (this.#inbound.length === 0 && !this.#closed) {
        await new Promise<void>((resolve) => (this.#wakeReader = resolve));
        this.#wakeReader = undefined;
      }
      if (this.#closed) return [];
      const batch = this.#inbound.splice(0, this.batchSize);
      this.stats.readPackets += batch.length;
      return batch;
    } finally {
      this.#reading = false;
    }
  }

  write(packets: readonly Uint8Array[]): number {
    if (this.#closed) throw new TypeError(`${this.name}: write() called after close()`);
    let written = 0;
    for (const p of packets) {
      if (p.length === 0 || p.length > this.mtu) {
        this.stats.writeDrops++;
        continue;
      }
      this.#outbound.push(p.slice());
      written++;
    }
    this.stats.writtenPackets += written;
    if (written > 0) this.#wakeWriter?.();
    return written;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wakeReader?.();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
