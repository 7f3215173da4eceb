/** The router's UdpFlow: datagrams of one 5-tuple; the first ones wait while the owner decides. */
import { addressText, type Parsed } from "./_packet.ts";
import type { Flow, RefuseReason, UdpFlow } from "./owner.ts";

export interface UdpFlowHost {
  send(flow: RouterUdpFlow, datagram: Uint8Array): void;
  icmp(quote: Uint8Array, reason: RefuseReason): void;
  closed(flow: RouterUdpFlow): void;
}

/** Datagrams held before `accept` (more are dropped: the app retries, as it would on a lossy network). */
const MAX_HELD = 16;
/** Bytes of the last inbound packet kept to quote in an ICMP error (RFC 1812 4.3.2.3 asks for up to 576). */
const QUOTE_LEN = 576;

const noop = () => {};

export class RouterUdpFlow implements UdpFlow {
  readonly flow: Flow;
  readonly key: string;
  readonly family: 4 | 6;
  readonly localAddr: Uint8Array;
  readonly remoteAddr: Uint8Array;
  readonly localPort: number;
  readonly remotePort: number;
  lastActive: number;
  onDatagram: (datagram: Uint8Array) => void = noop;
  onClose: () => void = noop;

  #state: "held" | "open" | "closed" = "held";
  #held: Uint8Array[] = [];
  readonly #quote = new Uint8Array(QUOTE_LEN);
  #quoteLen = 0;
  heldDrops = 0;

  constructor(p: Parsed, now: number, readonly host: UdpFlowHost) {
    this.family = p.family;
    this.key = p.key;
    this.localAddr = p.dst.slice();
    this.remoteAddr = p.src.slice();
    this.localPort = p.dstPort;
    this.remotePort = p.srcPort;
    this.lastActive = now;
    this.flow = {
      family: p.family,
      src: addressText(this.remoteAddr),
      srcPort: p.srcPort,
      dst: addressText(this.localAddr),
      dstPort: p.dstPort,
    };
  }

  /** An inbound datagram of this flow (`packet` is the whole IP packet it came in). */
  inbound(packet: Uint8Array, datagram: Uint8Array, now: number): void {
    this.lastActive = now;
    this.#quoteLen = Math.min(packet.length, QUOTE_LEN);
    this.#quote.set(packet.subarray(0, this.#quoteLen));
    if (this.#state === "open") this.onDatagram(datagram);
    else if (this.#state === "held") {
      if (this.#held.length < MAX_HELD) this.#held.push(datagram.slice());
      else this.heldDrops++;
    }
  }

  accept(): void {
    if (this.#state !== "held") return;
    this.#state = "open";
    const held = this.#held;
    this.#held = [];
    for (const d of held) this.onDatagram(d);
  }

  refuse(reason: RefuseReason): void {
    if (this.#state === "closed") return;
    if (this.#quoteLen) this.host.icmp(this.#quote.subarray(0, this.#quoteLen), reason);
    this.close();
  }

  send(datagram: Uint8Array): void {
    if (this.#state !== "open") return;
    this.host.send(this, datagram);
  }

  close(): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#held = [];
    this.host.closed(this);
    this.onClose();
  }
}
