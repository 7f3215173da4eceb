/**
 * A sans-IO table of UDP flows, keyed by the 5-tuple as the app sends (source = the app). It never reads a clock:
 * every call that can change time takes `now` in milliseconds, and `nextDeadline()` says when `expire` has work.
 *
 * Directions: **inbound** is from the TUN (the workstation's apps) towards the cluster; **outbound** is from the
 * cluster back out of the TUN to the app.
 *
 * Life of a flow: the first inbound datagram of an unknown 5-tuple creates it `pending` ("created"); its
 * datagrams are held (up to `maxHeld`) while the owner decides. `accept` opens it and hands back the held
 * datagrams; `refuse` removes it and hands back the packet to quote in an ICMP port unreachable. An open flow
 * delivers every inbound datagram ("deliver") until it is idle for its timeout, `close`d, or the table is full.
 */
import { type IpAddress, type IpHeader, IPV4_HEADER_LEN, type PacketInfo } from "../wire/mod.ts";

/**
 * Idle timeouts as Linux conntrack's for UDP (net/netfilter/nf_conntrack_proto_udp.c): 30 s while no datagram
 * went back to the app (nf_conntrack_udp_timeout), 120 s once one did (nf_conntrack_udp_timeout_stream).
 */
export const UDP_UNREPLIED_TIMEOUT_MS = 30_000;
export const UDP_REPLIED_TIMEOUT_MS = 120_000;
/** Default flow limit: bounded memory; the counter `tableFull` shows when it bites. */
export const UDP_DEFAULT_MAX_FLOWS = 4096;
/** Datagrams held per pending flow; more are dropped (the app retries, as on a lossy path). */
export const UDP_DEFAULT_MAX_HELD = 16;
/**
 * Bytes of the latest inbound packet kept to quote in an ICMP error: what an ICMPv4 error carries (576 minus its
 * own IP and ICMP headers, RFC 1812 4.3.2.3); for IPv6 it is plenty to identify the flow.
 */
export const UDP_QUOTE_LEN = 576 - IPV4_HEADER_LEN - 8;

export interface UdpFlowTableOptions {
  maxFlows?: number;
  maxHeld?: number;
  unrepliedTimeoutMs?: number;
  repliedTimeoutMs?: number;
}

/** What `inbound` did with a datagram; the flow concerned is `table.flow`. */
export type UdpInbound =
  /** A new pending flow: ask the owner, then call `accept` or `refuse`. The datagram is held. */
  | "created"
  /** The flow is still pending: the datagram is held. */
  | "held"
  /** The flow is pending and already holds `maxHeld` datagrams: dropped (`heldDropped`). */
  | "heldFull"
  /** The flow is open: deliver `info`'s payload to the owner now (the bytes are the caller's, valid until it returns). */
  | "deliver"
  /** No room for a new flow: dropped (`tableFull`); `table.flow` is null. */
  | "tableFull";

/** Table-wide counters, for `tp status`. */
export interface UdpFlowCounters {
  created: number;
  accepted: number;
  refused: number;
  expired: number;
  closed: number;
  tableFull: number;
  heldDropped: number;
  /** Held datagrams of pending flows that ended without `accept` (refused, closed, expired), or that the owner lost. */
  heldDiscarded: number;
}

export class UdpFlow<T = unknown> {
  /** The app's address and port (inbound source), and the cluster-side address and port it sends to. */
  readonly app: IpAddress;
  readonly appPort: number;
  readonly remote: IpAddress;
  readonly remotePort: number;
  /** Addresses for outbound packets (from `remote` to `app`), reused for every `buildUdpPacket`. */
  readonly outboundHeader: IpHeader;
  state: "pending" | "open" = "pending";
  /** The owner's value for this flow (its tunnel stream, say); set it on accept. */
  owner: T | undefined;
  readonly createdAt: number;
  lastActive: number;
  /** True once an outbound datagram went back to the app (the longer timeout applies). */
  replied = false;
  inboundDatagrams = 0;
  inboundBytes = 0;
  outboundDatagrams = 0;
  outboundBytes = 0;
  /** Inbound datagrams dropped while pending because `maxHeld` were already held. */
  heldDropped = 0;

  /** Time used to order the table's expiry scan (see `UdpFlowTable.expire`). */
  orderTime: number;
  held: Uint8Array[] = [];
  readonly #quote: Uint8Array;
  #quoteLen = 0;

  constructor(readonly key: string, packet: Uint8Array, info: PacketInfo, now: number) {
    this.app = info.srcAddress(packet);
    this.remote = info.dstAddress(packet);
    this.appPort = info.srcPort;
    this.remotePort = info.dstPort;
    this.outboundHeader = { src: this.remote, dst: this.app } as IpHeader;
    this.createdAt = this.lastActive = this.orderTime = now;
    this.#quote = new Uint8Array(UDP_QUOTE_LEN);
  }

  /** The start of the latest inbound IP packet, to quote in an ICMP error (the first held one while pending). */
  get quote(): Uint8Array {
    return this.#quote.subarray(0, this.#quoteLen);
  }

  /** Internal: records the latest inbound packet for `quote`. */
  keepQuote(packet: Uint8Array, ipLength: number): void {
    this.#quoteLen = Math.min(ipLength, this.#quote.length);
    this.#quote.set(packet.subarray(0, this.#quoteLen));
  }
}

export class UdpFlowTable<T = unknown> {
  readonly counters: UdpFlowCounters = {
    created: 0,
    accepted: 0,
    refused: 0,
    expired: 0,
    closed: 0,
    tableFull: 0,
    heldDropped: 0,
    heldDiscarded: 0,
  };
  /** The flow the last `inbound` call concerned (null after "tableFull"). */
  flow: UdpFlow<T> | null = null;

  readonly #flows = new Map<string, UdpFlow<T>>();
  /** Expiry queues, one per timeout, each in order of `orderTime` (see `expire`). */
  readonly #unrepliedQueue = new Set<UdpFlow<T>>();
  readonly #repliedQueue = new Set<UdpFlow<T>>();
  readonly #maxFlows: number;
  readonly #maxHeld: number;
  readonly #unreplied: number;
  readonly #replied: number;

  constructor(options: UdpFlowTableOptions = {}) {
    this.#maxFlows = options.maxFlows ?? UDP_DEFAULT_MAX_FLOWS;
    this.#maxHeld = options.maxHeld ?? UDP_DEFAULT_MAX_HELD;
    this.#unreplied = options.unrepliedTimeoutMs ?? UDP_UNREPLIED_TIMEOUT_MS;
    this.#replied = options.repliedTimeoutMs ?? UDP_REPLIED_TIMEOUT_MS;
    if (this.#maxFlows < 1 || this.#maxHeld < 0 || this.#unreplied <= 0 || this.#replied < this.#unreplied) {
      throw new RangeError(`Invalid UDP flow table options ${JSON.stringify(options)}`);
    }
  }

  get size(): number {
    return this.#flows.size;
  }

  get(key: string): UdpFlow<T> | undefined {
    return this.#flows.get(key);
  }

  flows(): IterableIterator<UdpFlow<T>> {
    return this.#flows.values();
  }

  /**
   * One inbound UDP datagram that `classify` accepted into `info` (protocol 17). Looks up or creates its flow,
   * counts it, and says what to do with it. The table copies what it holds; `packet` stays the caller's.
   */
  inbound(packet: Uint8Array, info: PacketInfo, now: number): UdpInbound {
    const key = info.flowKey(packet);
    let flow = this.#flows.get(key);
    let created = false;
    if (flow === undefined) {
      if (this.#flows.size >= this.#maxFlows) {
        this.counters.tableFull++;
        this.flow = null;
        return "tableFull";
      }
      flow = new UdpFlow<T>(key, packet, info, now);
      this.#flows.set(key, flow);
      this.#unrepliedQueue.add(flow);
      this.counters.created++;
      created = true;
    }
    this.flow = flow;
    flow.lastActive = now;
    flow.inboundDatagrams++;
    flow.inboundBytes += info.payloadEnd - info.payloadOffset;
    if (flow.state === "open") {
      flow.keepQuote(packet, info.ipLength);
      return "deliver";
    }
    if (flow.held.length >= this.#maxHeld) {
      flow.heldDropped++;
      this.counters.heldDropped++;
      return "heldFull";
    }
    if (flow.held.length === 0) flow.keepQuote(packet, info.ipLength);
    flow.held.push(packet.slice(info.payloadOffset, info.payloadEnd));
    return created ? "created" : "held";
  }

  /** The owner accepted a pending flow: it opens, and the held datagrams are returned for delivery, in order. */
  accept(flow: UdpFlow<T>, owner?: T): Uint8Array[] {
    if (flow.state !== "pending" || this.#flows.get(flow.key) !== flow) return [];
    flow.state = "open";
    if (owner !== undefined) flow.owner = owner;
    this.counters.accepted++;
    const held = flow.held;
    flow.held = [];
    return held;
  }

  /**
   * The owner refused a flow (pending, or open and the cluster port turned out closed): it is removed, and the
   * packet to quote in the ICMP port unreachable (`buildUnreachable`) is returned, or null if it was gone.
   */
  refuse(flow: UdpFlow<T>): Uint8Array | null {
    if (!this.#remove(flow)) return null;
    this.counters.refused++;
    return flow.quote;
  }

  /**
   * One outbound datagram of `bytes` payload bytes for the app on `flow`: counted, and it marks the flow
   * replied (the longer idle timeout). Returns false, and counts nothing, if the flow is not open.
   */
  outbound(flow: UdpFlow<T>, bytes: number, now: number): boolean {
    if (flow.state !== "open" || this.#flows.get(flow.key) !== flow) return false;
    flow.outboundDatagrams++;
    flow.outboundBytes += bytes;
    flow.lastActive = now;
    if (!flow.replied) {
      flow.replied = true;
      this.#unrepliedQueue.delete(flow);
      flow.orderTime = now;
      this.#repliedQueue.add(flow);
    }
    return true;
  }

  /** Removes a flow now (the owner's stream ended). Returns false if it was already gone. */
  close(flow: UdpFlow<T>): boolean {
    if (!this.#remove(flow)) return false;
    this.counters.closed++;
    return true;
  }

  #remove(flow: UdpFlow<T>): boolean {
    if (this.#flows.get(flow.key) !== flow) return false;
    this.#flows.delete(flow.key);
    (flow.replied ? this.#repliedQueue : this.#unrepliedQueue).delete(flow);
    this.counters.heldDiscarded += flow.held.length;
    flow.held = [];
    return true;
  }

  /** The owner lost `n` of the datagrams `accept` handed back (it closed the flow while taking them): counted. */
  discarded(n: number): void {
    this.counters.heldDiscarded += n;
  }

  /** When `expire` may next find an idle flow (possibly early, never late, always after the last `expire`). */
  nextDeadline(): number | null {
    let deadline: number | null = null;
    for (const flow of this.#unrepliedQueue) {
      deadline = flow.orderTime + this.#unreplied;
      break;
    }
    for (const flow of this.#repliedQueue) {
      const d = flow.orderTime + this.#replied;
      if (deadline === null || d < deadline) deadline = d;
      break;
    }
    return deadline;
  }

  /**
   * Removes and returns the flows idle for their timeout at `now` (the caller tells each owner). Amortized O(1)
   * per flow: each timeout has a queue in order of `orderTime`, a lower bound of a flow's last activity, so a
   * scan stops at the first flow that cannot have expired; active flows met on the way move to the back with
   * `orderTime` set to their last activity (so they are not met again before their real deadline).
   */
  expire(now: number): UdpFlow<T>[] {
    const expired: UdpFlow<T>[] = [];
    this.#scan(this.#unrepliedQueue, this.#unreplied, now, expired);
    this.#scan(this.#repliedQueue, this.#replied, now, expired);
    for (const flow of expired) this.#remove(flow);
    this.counters.expired += expired.length;
    return expired;
  }

  #scan(queue: Set<UdpFlow<T>>, timeout: number, now: number, expired: UdpFlow<T>[]): void {
    const moved: UdpFlow<T>[] = [];
    for (const flow of queue) {
      if (flow.orderTime + timeout > now) break;
      if (flow.lastActive + timeout <= now) expired.push(flow);
      else moved.push(flow);
    }
    for (const flow of moved) {
      queue.delete(flow);
      flow.orderTime = flow.lastActive;
      queue.add(flow);
    }
  }
}
