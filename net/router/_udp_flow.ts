/**
 * The router's UdpFlow (owner.ts): a thin adapter over one entry of `net/udp`'s `UdpFlowTable`, which holds the
 * state (pending/open, held datagrams, the packet to quote, idle times and counters).
 */
import type { UdpFlow as TableFlow, UdpFlowTable } from "../udp/mod.ts";
import { ipToString } from "../wire/mod.ts";
import type { Flow, RefuseReason, UdpFlow } from "./owner.ts";

export interface UdpFlowHost {
  readonly table: UdpFlowTable<RouterUdpFlow>;
  /** Builds and writes an outbound datagram of an open flow. */
  send(flow: RouterUdpFlow, datagram: Uint8Array): void;
  /** Answers `quote` (an inbound packet's start) with an ICMP unreachable. */
  icmp(quote: Uint8Array, reason: RefuseReason): void;
}

const noop = () => {};

export class RouterUdpFlow implements UdpFlow {
  readonly flow: Flow;
  onDatagram: (datagram: Uint8Array) => void = noop;
  onClose: () => void = noop;
  #closed = false;

  constructor(readonly entry: TableFlow<RouterUdpFlow>, readonly host: UdpFlowHost) {
    this.flow = {
      family: typeof entry.app === "number" ? 4 : 6,
      src: ipToString(entry.app),
      srcPort: entry.appPort,
      dst: ipToString(entry.remote),
      dstPort: entry.remotePort,
    };
  }

  accept(): void {
    if (this.#closed) return;
    const held = this.host.table.accept(this.entry, this);
    for (let i = 0; i < held.length; i++) {
      if (this.#closed) return this.host.table.discarded(held.length - i); // the owner closed it while taking them
      this.onDatagram(held[i]!);
    }
  }

  refuse(reason: RefuseReason): void {
    if (this.#closed) return;
    const quote = this.host.table.refuse(this.entry);
    if (quote !== null && quote.length > 0) this.host.icmp(quote, reason);
    this.fireClose();
  }

  send(datagram: Uint8Array): void {
    this.host.send(this, datagram); // after the flow ended too: the router counts the drop
  }

  close(): void {
    if (this.#closed) return;
    this.host.table.close(this.entry);
    this.fireClose();
  }

  /** The table dropped the entry (expiry, router stop) or the owner ended it: tell the owner, once. */
  fireClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onClose();
  }
}
