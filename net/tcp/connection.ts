/** One TCP connection as its owner sees it: sans-IO, driven by `input()` and `poll()`. */
import { TcpFlags, type TcpRepr } from "../wire/tcp_repr.ts";
import { queueRst, segmentArrives, takePeerSyn } from "./_input.ts";
import { type Emit, flush, windowUpdateDue } from "./_output.ts";
import { SMALL_RING, Tcb } from "./_tcb.ts";
import { timersExpire } from "./_timer.ts";
import {
  newTcpCounters,
  resolveConfig,
  type TcpConfig,
  type TcpCounters,
  type TcpError,
  TcpEvent,
  type TcpOptions,
  type TcpState,
} from "./options.ts";
import { seqAdd, seqDiff, seqGt } from "./seq.ts";

export type { Emit };

/** Ports of a connection, from our side. */
export interface TcpPorts {
  localPort: number;
  remotePort: number;
}

/** How a connection is built: a resolved config or options, counters to share, and a wake-up hook. */
export interface TcpConnectionInit {
  config?: TcpConfig | TcpOptions;
  counters?: TcpCounters;
  /** Called when an owner call (write, consume, accept...) leaves segments to send: poll the connection soon. */
  wake?: (conn: TcpConnection) => void;
}

/** A snapshot of the connection's variables, for status output and tests. */
export interface TcpInfo {
  sndUna: number;
  sndNxt: number;
  sndWnd: number;
  sndMss: number;
  rcvNxt: number;
  rcvWnd: number;
  cwnd: number;
  ssthresh: number;
  srttMs: number;
  rtoMs: number;
  retries: number;
  inRecovery: boolean;
  sackOk: boolean;
  timestampsOk: boolean;
  sndScale: number;
  rcvScale: number;
  unsentBytes: number;
  unackedBytes: number;
}

function isConfig(c: TcpConfig | TcpOptions): c is TcpConfig {
  return typeof (c as TcpConfig).random === "function" && "keepalive" in c && "log" in c;
}

/** The connection's config: the one given, or resolved from the options given (or from none). */
function configOf(init: TcpConnectionInit): TcpConfig {
  if (init.config === undefined) return resolveConfig();
  return isConfig(init.config) ? init.config : resolveConfig(init.config);
}

export class TcpConnection {
  readonly #t: Tcb;
  readonly #wake: ((conn: TcpConnection) => void) | null;

  private constructor(t: Tcb, wake: ((conn: TcpConnection) => void) | null) {
    this.#t = t;
    this.#wake = wake;
  }

  /**
   * Passive open: `syn` arrived at the listening endpoint. The connection starts in SYN-HELD with the Incoming
   * event raised; nothing is sent until `accept()` or `refuse()`.
   */
  static fromSyn(syn: TcpRepr, now: number, init: TcpConnectionInit = {}): TcpConnection {
    if (!(syn.flags & TcpFlags.SYN) || syn.flags & (TcpFlags.ACK | TcpFlags.RST)) {
      throw new TypeError(`fromSyn() needs a bare SYN, got flags 0x${syn.flags.toString(16)}`);
    }
    const cfg = configOf(init);
    const counters = init.counters ?? newTcpCounters();
    const t = new Tcb(cfg, counters, { localPort: syn.dstPort, remotePort: syn.srcPort }, true, "SYN-HELD");
    counters.segmentsIn++;
    counters.connectionsOpened++;
    takePeerSyn(t, syn);
    t.closeAt = now + cfg.heldSynTimeoutMs;
    t.events |= TcpEvent.Incoming;
    return new TcpConnection(t, init.wake ?? null);
  }

  /** Active open (RFC 9293 section 3.10.1): SYN-SENT, the SYN goes out on the next `poll()`. */
  static connect(ports: TcpPorts, init: TcpConnectionInit = {}): TcpConnection {
    const cfg = configOf(init);
    const counters = init.counters ?? newTcpCounters();
    const t = new Tcb(cfg, counters, ports, false, "SYN-SENT");
    counters.connectionsOpened++;
    return new TcpConnection(t, init.wake ?? null);
  }

  get state(): TcpState {
    return this.#t.state;
  }
  /** Why the connection failed, or null. */
  get error(): TcpError | null {
    return this.#t.error;
  }
  get localPort(): number {
    return this.#t.localPort;
  }
  get remotePort(): number {
    return this.#t.remotePort;
  }
  /** Opened by the peer's SYN. */
  get passive(): boolean {
    return this.#t.passive;
  }
  /** The peer's initial sequence number: with the ports, what an ICMP error quoting the SYN needs. */
  get peerIsn(): number {
    return this.#t.irs;
  }
  get counters(): TcpCounters {
    return this.#t.counters;
  }

  info(): TcpInfo {
    const t = this.#t;
    return {
      sndUna: t.sndUna,
      sndNxt: t.sndNxt,
      sndWnd: t.sndWnd,
      sndMss: t.sndMss,
      rcvNxt: t.rcvNxt,
      rcvWnd: Math.max(0, seqDiff(t.rcvAdvEdge, t.rcvNxt)),
      cwnd: t.cc.cwnd,
      ssthresh: t.cc.ssthresh,
      srttMs: t.rtt.srtt,
      rtoMs: t.rtt.rto,
      retries: t.retries,
      inRecovery: t.inRecovery,
      sackOk: t.sackOk,
      timestampsOk: t.tsOk,
      sndScale: t.sndScale,
      rcvScale: t.rcvScale,
      unsentBytes: Math.max(0, seqDiff(t.dataEnd, t.sndNxt)),
      unackedBytes: t.sendBuf.length,
    };
  }

  // ---- driving ----

  /**
   * Whether `seg` opens a new connection in place of this one: a bare SYN above the old sequence space while this
   * connection is in TIME-WAIT (RFC 9293 section 3.10.7.4, RFC 6191). The caller then forgets this connection and
   * opens one from the SYN; otherwise the segment goes to `input()`.
   */
  reopenedBy(seg: TcpRepr): boolean {
    return (seg.flags & (TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST)) === TcpFlags.SYN && this.state === "TIME-WAIT" &&
      seqGt(seg.seq, this.#t.rcvNxt);
  }

  /** One segment for this connection (ports already matched by the caller). */
  input(seg: TcpRepr, now: number): void {
    segmentArrives(this.#t, seg, now);
  }

  /** Runs due timers and emits what is to be sent. Call after `input()`s, owner calls, or at `nextDeadline()`. */
  poll(now: number, emit: Emit): void {
    const t = this.#t;
    if (t.nextDeadline() <= now) timersExpire(t, now);
    flush(t, now, emit);
  }

  /** When `poll()` should next run (ms, same clock as `now`); Infinity when no timer runs. */
  nextDeadline(): number {
    return this.#t.nextDeadline();
  }

  /** Returns and clears the pending `TcpEvent` bits. */
  takeEvents(): number {
    const e = this.#t.events;
    this.#t.events = 0;
    return e;
  }

  // ---- opening ----

  /** Deferred accept: answers the held SYN with a SYN-ACK. */
  accept(): void {
    const t = this.#t;
    if (t.state !== "SYN-HELD") throw new TypeError(`accept() needs SYN-HELD, connection is ${t.state}`);
    t.closeAt = Number.POSITIVE_INFINITY;
    t.setState("SYN-RECEIVED", "accepted by owner");
    t.sndNxt = t.iss;
    this.#kick();
  }

  /**
   * Refuses the held SYN: with `reply: "rst"` (default) an RST,ACK goes out (RFC 9293 section 3.10.7.2);
   * with `"none"` nothing does, and the caller answers with an ICMP error built from the SYN it holds.
   */
  refuse(options: { reply?: "rst" | "none" } = {}): void {
    const t = this.#t;
    if (t.state !== "SYN-HELD") throw new TypeError(`refuse() needs SYN-HELD, connection is ${t.state}`);
    t.counters.connectionsRefused++;
    if ((options.reply ?? "rst") === "rst") queueRst(t, 0, seqAdd(t.irs, 1));
    t.error = "refused";
    t.setState("CLOSED", "refused by owner");
    this.#kick();
  }

  // ---- sending ----

  /**
   * Queues bytes to send; returns how many were taken (all, some, or 0 when the send buffer is full). After a
   * short write, the Writable event says when to try again. Writing after `shutdownWrite()` is a TypeError; on
   * a closed or reset connection it takes nothing.
   */
  write(bytes: Uint8Array): number {
    const t = this.#t;
    if (t.finQueued) throw new TypeError("write() after shutdownWrite()");
    switch (t.state) {
      case "SYN-HELD":
      case "SYN-SENT":
      case "SYN-RECEIVED":
      case "ESTABLISHED":
      case "CLOSE-WAIT":
        break;
      default:
        return 0;
    }
    const n = t.sendBuf.append(bytes);
    if (n < bytes.length) t.writeBlocked = true;
    if (n > 0) this.#kick();
    return n;
  }

  /** Bytes `write()` would take now. */
  get writable(): number {
    const t = this.#t;
    return t.finQueued || t.state === "CLOSED" ? 0 : t.sendBuf.free;
  }

  /** Half-close (RFC 9293 section 3.10.4): a FIN follows the queued bytes; reading goes on. Idempotent. */
  shutdownWrite(): void {
    const t = this.#t;
    if (t.finQueued) return;
    switch (t.state) {
      case "ESTABLISHED":
        t.finQueued = true;
        t.setState("FIN-WAIT-1", "owner shut down writing");
        break;
      case "CLOSE-WAIT":
        t.finQueued = true;
        t.setState("LAST-ACK", "owner shut down writing");
        break;
      case "SYN-HELD":
      case "SYN-SENT":
      case "SYN-RECEIVED":
        // The FIN follows once the handshake completes.
        t.finQueued = true;
        return;
      default:
        return;
    }
    this.#kick();
  }

  /** Aborts (RFC 9293 section 3.10.5): an RST to the peer where one is due, then CLOSED. */
  abort(): void {
    const t = this.#t;
    switch (t.state) {
      case "CLOSED":
        return;
      case "SYN-HELD":
        queueRst(t, 0, seqAdd(t.irs, 1));
        break;
      case "SYN-RECEIVED":
      case "ESTABLISHED":
      case "FIN-WAIT-1":
      case "FIN-WAIT-2":
      case "CLOSE-WAIT":
        queueRst(t, t.sndMax, t.rcvNxt);
        break;
      default:
        break;
    }
    t.error = "aborted";
    t.setState("CLOSED", "aborted by owner");
    this.#kick();
  }

  // ---- receiving ----

  /** Bytes received in order and not yet consumed. */
  get readable(): number {
    return this.#t.rcvBuf.length;
  }

  /** The peer's stream has ended: FIN received and every byte consumed. */
  get eof(): boolean {
    return this.#t.finReceived && this.#t.rcvBuf.length === 0;
  }

  /**
   * A view of the next readable bytes (at most `max`; may be fewer than `readable` where the buffer wraps).
   * Valid until the next `consume()` or `input()`.
   */
  peek(max = Number.POSITIVE_INFINITY): Uint8Array {
    return this.#t.rcvBuf.peek(0, Math.min(max, this.#t.rcvBuf.length));
  }

  /** Releases `n` read bytes, reopening the receive window (a window update goes out when worthwhile). */
  consume(n: number): void {
    const t = this.#t;
    if (!(n >= 0 && n <= t.rcvBuf.length)) throw new RangeError(`Cannot consume ${n} of ${t.rcvBuf.length} bytes`);
    if (n === 0) return;
    t.rcvBuf.advance(n);
    if (t.ooo.size === 0) t.rcvBuf.releaseIfEmpty(SMALL_RING);
    if (t.finReceived || t.state === "CLOSED") return;
    if (windowUpdateDue(t)) {
      t.ackNow = true;
      t.counters.windowUpdates++;
      this.#kick();
    }
  }

  /** Copies up to `dst.length` readable bytes into `dst` and consumes them; returns the count. */
  readInto(dst: Uint8Array): number {
    const n = this.#t.rcvBuf.copyOut(dst);
    this.consume(n);
    return n;
  }

  #kick(): void {
    this.#wake?.(this);
  }
}
