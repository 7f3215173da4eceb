/**
 * The virtual network device tp's router reads and writes: IP packets, no link-layer header.
 *
 * Directions, used the same way everywhere in tp: **inbound** is from the TUN towards the cluster (packets the
 * machine's programs sent to a cluster address, returned by `read`); **outbound** is from the cluster towards the
 * TUN (packets the router hands to `write`, delivered to the machine's programs).
 *
 * Implementations: `tun_linux.ts` (a kernel TUN device through FFI) and `tun_memory.ts` (two in-memory queues, for
 * tests without a kernel). A macOS utun or Windows wintun backend would be a third file behind this interface.
 */
export interface TunDevice {
  /** The interface name the kernel gave the device ("tp0"); constant for the device's lifetime. */
  readonly name: string;

  /**
   * The device MTU in bytes: the largest IP packet `read` returns and `write` accepts.
   */
  readonly mtu: number;

  /** The most packets one `read` call returns, and a good number of packets to pass to one `write`. */
  readonly batchSize: number;

  /** Counters since the device was opened (read-only for callers; `tp status` shows them). */
  readonly stats: Readonly<TunStats>;

  /**
   * Waits until at least one inbound packet is available, then returns between 1 and `batchSize` whole IP
   * packets, in the order the kernel queued them.
   *
   * The returned arrays are views into buffers the device reuses: they are valid only until the next `read` call;
   * copy what must live longer. Only one `read` may be pending at a time (a second concurrent call throws
   * TypeError). Resolves to an empty array once the device is closed, including when `close` is called while
   * the read waits: an empty result means "no more packets, ever".
   */
  read(): Promise<Uint8Array[]>;

  /**
   * Writes outbound packets, each a whole IP packet, and returns how many the device accepted. Blocks (briefly)
   * when the kernel queue is full. A packet the kernel rejects (malformed, too long) is counted as a drop, not
   * thrown, and the remaining packets are still written. Throws an OsError only when the device itself failed,
   * and TypeError after `close`.
   */
  write(packets: readonly Uint8Array[]): number;

  /**
   * Releases the device. For a kernel TUN this removes the interface, and with it its addresses and routes. A
   * pending `read` resolves to `[]`. Idempotent.
   */
  close(): void;
}

/** Counters every device keeps; drops are counted, not thrown. */
export interface TunStats {
  /** Packets returned by `read`. */
  readPackets: number;
  /** Packets accepted by `write`. */
  writtenPackets: number;
  /** Inbound packets dropped because they were malformed (e.g. longer than the MTU). */
  readDrops: number;
  /** Outbound packets the kernel (or the memory device) refused. */
  writeDrops: number;
}

/** A fresh set of zeroed counters. */
export function newTunStats(): TunStats {
  return { readPackets: 0, writtenPackets: 0, readDrops: 0, writeDrops: 0 };
}
