/**
 * The listening endpoint: a table of connections keyed by the router's flow key, deferred accept, RSTs for
 * segments that match nothing, a connection limit, one timer queue, and batched output.
 */
import { TcpFlags, type TcpRepr } from "../wire/tcp_repr.ts";
import { DeadlineHeap } from "./_heap.ts";
import { TcpConnection, type TcpPorts } from "./connection.ts";
import { newTcpCounters, resolveConfig, type TcpConfig, type TcpCounters, type TcpOptions } from "./options.ts";
import { rstForUnmatched } from "./reset.ts";
import { seqGt } from "./seq.ts";

/** What `input()` did with a segment. */
export type TcpDisposition =
  /** Given to an existing connection. */
  | "handled"
  /** A new connection is held: the owner gets the Incoming event and must accept or refuse. */
  | "incoming"
  /** Matched nothing (or hit the connection limit); an RST was sent. */
  | "reset-sent"
  /** Matched nothing and deserves no answer (an RST). */
  | "dropped";

export interface TcpEndpointOptions<F> extends TcpOptions {
  /** Sends one segment of `flow` (the caller adds the IP header). `seg` is only valid during the call. */
  emit: (flow: F, seg: TcpRepr) => void;
  /** Delivers `TcpEvent` bits for a connection; owner calls made here take effect in the same `poll()`. */
  onEvents?: (conn: TcpConnection, events: number, flow: F) => void;
  /** Connections (any state, held SYNs included) before new SYNs are refused. Default 4096. */
  maxConnections?: number;
}

interface Entry<F> {
  readonly key: string;
  readonly flow: F;
  readonly conn: TcpConnection;
  readonly emit: (seg: TcpRepr) => void;
  dirty: boolean;
  /** Earliest deadline this entry has in the heap (Infinity: none). */
  heapAt: number;
  gone: boolean;
}

export class TcpEndpoint<F> {
  readonly config: TcpConfig;
  readonly counters: TcpCounters = newTcpCounters();
  readonly maxConnections: number;
  readonly #emit: (flow: F, seg: TcpRepr) => void;
  readonly #onEvents: ((conn: TcpConnection, events: number, flow: F) => void) | null;
  readonly #table = new Map<string, Entry<F>>();
  readonly #entries = new WeakMap<TcpConnection, Entry<F>>();
  readonly #heap = new DeadlineHeap<Entry<F>>();
  #dirty: Entry<F>[] = [];
  readonly #wake = (conn: TcpConnection): void => {
    const e = this.#entries.get(conn);
    if (e !== undefined) this.#markDirty(e);
  };

  constructor(options: TcpEndpointOptions<F>) {
    const { emit, onEvents, maxConnections, ...tcp } = options;
    this.config = resolveConfig(tcp);
    this.#emit = emit;
    this.#onEvents = onEvents ?? null;
    this.maxConnections = maxConnections ?? 4096;
  }

  /** Connections in the table. */
  get size(): number {
    return this.#table.size;
  }

  get(key: string): TcpConnection | undefined {
    return this.#table.get(key)?.conn;
  }

  /** The flow a connection was opened with. */
  flowOf(conn: TcpConnection): F | undefined {
    return this.#entries.get(conn)?.flow;
  }

  /**
   * One segment of the flow `key` (the router's string for the address/port 4-tuple; `flow` is its addressing,
   * kept for new connections). Nothing is sent until `poll()`, except RSTs for unmatched segments.
   */
  input(key: string, flow: F, seg: TcpRepr, now: number): TcpDisposition {
    let e = this.#table.get(key);
    const bareSyn = (seg.flags & (TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST)) === TcpFlags.SYN;
    if (e !== undefined && bareSyn && e.conn.state === "TIME-WAIT" && seqGt(seg.seq, e.conn.info().rcvNxt)) {
      // RFC 9293 section 3.10.7.4 / RFC 6191: a new SYN above the old sequence space may reopen a TIME-WAIT pair.
      this.#remove(e);
      e = undefined;
    }
    if (e !== undefined) {
      e.conn.input(seg, now);
      this.#markDirty(e);
      return "handled";
    }
    if (bareSyn) {
      if (this.#table.size >= this.maxConnections) {
        this.counters.connectionLimitDrops++;
        return this.#reset(flow, seg);
      }
      const conn = TcpConnection.fromSyn(seg, now, { config: this.config, counters: this.counters, wake: this.#wake });
      this.#add(key, flow, conn);
      return "incoming";
    }
    this.counters.unmatchedSegments++;
    return this.#reset(flow, seg);
  }

  /** Active open towards the peer of `flow`; the SYN goes out on the next `poll()`. */
  connect(key: string, flow: F, ports: TcpPorts): TcpConnection {
    if (this.#table.has(key)) throw new TypeError(`Connection "${key}" already exists`);
    if (this.#table.size >= this.maxConnections) {
      this.counters.connectionLimitDrops++;
      throw new RangeError(`Connection limit ${this.maxConnections} reached`);
    }
    const conn = TcpConnection.connect(ports, { config: this.config, counters: this.counters, wake: this.#wake });
    this.#add(key, flow, conn);
    return conn;
  }

  /**
   * Runs due timers, delivers events, and emits everything connections want to send. Call after each batch
   * of `input()`s, after owner calls outside `onEvents`, and at `nextDeadline()`. Returns `nextDeadline()`.
   */
  poll(now: number): number {
    while (this.#heap.peek() <= now) {
      const at = this.#heap.peek();
      const e = this.#heap.pop()!;
      if (e.gone) continue;
      if (at === e.heapAt) e.heapAt = Number.POSITIVE_INFINITY;
      this.#markDirty(e);
    }
    const list = this.#dirty;
    for (let i = 0; i < list.length; i++) this.#service(list[i]!, now);
    this.#dirty = [];
    return this.nextDeadline();
  }

  /** When `poll()` should run next (Infinity: only on input). May be early; never late. */
  nextDeadline(): number {
    return this.#dirty.length > 0 ? Number.NEGATIVE_INFINITY : this.#heap.peek();
  }

  #service(e: Entry<F>, now: number): void {
    if (e.gone) return;
    // Owner calls inside onEvents mark the entry dirty again, so it is serviced once more in this poll.
    e.dirty = false;
    const c = e.conn;
    const ev = c.takeEvents();
    if (ev !== 0) this.#onEvents?.(c, ev, e.flow);
    c.poll(now, e.emit);
    // Events raised by timers or the flush (a timeout, Writable...).
    const late = c.takeEvents();
    if (late !== 0) this.#onEvents?.(c, late, e.flow);
    if (e.dirty) c.poll(now, e.emit); // e.g. an abort() answering a late event: its RST goes out now
    if (c.state === "CLOSED") {
      this.#remove(e);
      return;
    }
    const d = c.nextDeadline();
    if (d < e.heapAt) {
      e.heapAt = d;
      this.#heap.push(d, e);
    }
  }

  #add(key: string, flow: F, conn: TcpConnection): void {
    const emit = (seg: TcpRepr) => this.#emit(flow, seg);
    const e: Entry<F> = { key, flow, conn, emit, dirty: false, heapAt: Number.POSITIVE_INFINITY, gone: false };
    this.#table.set(key, e);
    this.#entries.set(conn, e);
    this.#markDirty(e);
  }

  #remove(e: Entry<F>): void {
    e.gone = true;
    if (this.#table.get(e.key) === e) this.#table.delete(e.key);
  }

  #markDirty(e: Entry<F>): void {
    if (e.dirty || e.gone) return;
    e.dirty = true;
    this.#dirty.push(e);
  }

  #reset(flow: F, seg: TcpRepr): TcpDisposition {
    const rst = rstForUnmatched(seg);
    if (rst === null) return "dropped";
    this.counters.resetsSent++;
    this.counters.segmentsOut++;
    this.#emit(flow, rst);
    return "reset-sent";
  }
}
