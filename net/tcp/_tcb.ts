/**
 * The transmission control block (RFC 9293 section 3.3.1): every variable of one connection, and `setState`, the
 * only function that changes its state. `_input.ts`, `_output.ts` and `_timer.ts` operate on it;
 * `connection.ts` wraps it in the owner's API.
 */
import type { TcpRepr } from "../wire/tcp_repr.ts";
import { NewReno } from "./_congestion.ts";
import { ByteRing } from "./_ring.ts";
import { RttEstimator } from "./_rtt.ts";
import { OooBlocks, SackScoreboard } from "./_sack.ts";
import { type TcpConfig, type TcpCounters, type TcpError, TcpEvent, type TcpState } from "./options.ts";
import { seqAdd } from "./seq.ts";

const NEVER = Number.POSITIVE_INFINITY;

/** RFC 7323 section 2.3: the largest shift count. */
const MAX_WINDOW_SCALE = 14;
/** RFC 9293 section 3.7.1: the MSS to assume when the peer sends none (IPv4). */
export const DEFAULT_PEER_MSS = 536;
/** RFC 7323 section 3: the timestamps option takes 10 bytes, 12 with the usual padding. */
export const TIMESTAMPS_LEN = 12;

/** The smallest window scale that lets a 16-bit field cover `limit` bytes. */
export function windowScaleFor(limit: number): number {
  let s = 0;
  while (s < MAX_WINDOW_SCALE && limit >> s > 0xffff) s++;
  return s;
}

const INITIAL_RING = 2048;
/** Rings this small are freed when they empty (ByteRing.releaseIfEmpty): idle connections keep no buffers. */
export const SMALL_RING = 4 * INITIAL_RING;

export class Tcb {
  state: TcpState;
  readonly cfg: TcpConfig;
  readonly counters: TcpCounters;
  readonly localPort: number;
  readonly remotePort: number;
  /** Opened by a SYN from the peer (passive open). */
  readonly passive: boolean;
  /** Pending `TcpEvent` bits for the owner. */
  events = 0;
  error: TcpError | null = null;

  // Send sequence space (RFC 9293 section 3.3.1). sndMax is the highest sequence ever sent: after a timeout
  // SND.NXT goes back to SND.UNA (go-back-N) while sndMax remembers what the peer may acknowledge.
  iss: number;
  sndUna: number;
  sndNxt: number;
  sndMax: number;
  sndWnd = 0;
  sndWl1 = 0;
  sndWl2 = 0;
  maxSndWnd = 0;
  sndScale = 0;
  /** Payload bytes per segment we send (MSS less the timestamps option). */
  sndMss: number;
  /** Owner's bytes not yet acknowledged; offset 0 is sequence `sndBufSeq`. */
  readonly sendBuf: ByteRing;
  sndBufSeq: number;
  /** The owner called `shutdownWrite()`: a FIN follows the last byte of `sendBuf`. */
  finQueued = false;
  /** A `write()` came back short; raise Writable when space frees. */
  writeBlocked = false;

  // Receive sequence space.
  irs = 0;
  rcvNxt = 0;
  rcvScale: number;
  /** Bytes received in order and not consumed, then out-of-order bytes parked at their offset. */
  readonly rcvBuf: ByteRing;
  /** The right edge of the window we last advertised; never moved left (RFC 9293 section 3.8.6). */
  rcvAdvEdge = 0;
  /**
   * The furthest right edge ever advertised. Rounding the scaled window down can move the edge left by less than
   * 2^scale bytes after the peer has sent up to it; segments up to here stay acceptable (their ACKs count), though
   * data past the buffer is still dropped.
   */
  rcvAdvMax = 0;
  readonly ooo: OooBlocks;
  /** Sequence number of a FIN received out of order, or -1. */
  peerFinSeq = -1;
  finReceived = false;
  /** Estimated size of the peer's full segments, for delayed ACKs (like Linux's rcv_mss). */
  rcvMss: number;

  // Options negotiated on the SYNs.
  /** Window scaling is in use (both SYNs carried the option). */
  wsOk = false;
  sackOk = false;
  tsOk = false;
  tsRecent = 0;
  lastAckSent = 0;
  peerMss = DEFAULT_PEER_MSS;

  // ACK generation.
  ackNow = false;
  unackedBytes = 0;

  // Timers: absolute times in ms, NEVER when stopped.
  rtxAt = NEVER;
  persistAt = NEVER;
  ackAt = NEVER;
  keepAt = NEVER;
  /** TIME-WAIT expiry, or the held SYN's deadline. */
  closeAt = NEVER;
  retries = 0;
  persistBackoff = 0;
  keepProbes = 0;
  timeoutInRow = false;

  // Loss recovery and congestion control.
  readonly rtt: RttEstimator;
  readonly cc: NewReno;
  /** Karn timing when timestamps are off: the segment ending at rttSeq was sent at rttTime (-1: none). */
  rttSeq = 0;
  rttTime = -1;
  /** When the retransmission timer last expired (-inf: never); older timestamp echoes are not RTT samples. */
  lastRtoTime = Number.NEGATIVE_INFINITY;
  dupAcks = 0;
  inRecovery = false;
  recover: number;
  /** Below this, holes have been retransmitted in the current recovery. */
  highRxt: number;
  /** Retransmit at SND.UNA on the next flush (fast retransmit, partial ACK, timeout). */
  forceRexmit = false;
  /** Further SACK holes that may be retransmitted (one per duplicate ACK in recovery). */
  rexmitQuota = 0;
  readonly sacked = new SackScoreboard();

  // Control segments to send on the next flush.
  /** Sequence of an RST to send, with ACK, or -1. */
  rstSeq = -1;
  rstAck = -1;
  probePending = false;
  keepProbePending = false;

  /** Segment object reused for every data and ACK segment (valid only during the emit callback). */
  readonly out: TcpRepr;
  readonly tsPair: [number, number] = [0, 0];
  #scratch: Uint8Array | null = null;

  constructor(
    cfg: TcpConfig,
    counters: TcpCounters,
    ports: { localPort: number; remotePort: number },
    passive: boolean,
    state: TcpState,
  ) {
    this.cfg = cfg;
    this.counters = counters;
    this.localPort = ports.localPort;
    this.remotePort = ports.remotePort;
    this.passive = passive;
    this.state = state;
    this.iss = cfg.random() >>> 0;
    this.sndUna = this.sndNxt = this.sndMax = this.iss;
    this.sndBufSeq = seqAdd(this.iss, 1);
    this.recover = this.highRxt = this.iss;
    this.sndMss = Math.min(cfg.mss, DEFAULT_PEER_MSS);
    this.rcvMss = cfg.mss;
    this.rcvScale = cfg.windowScaling ? windowScaleFor(cfg.recvBufferLimit) : 0;
    // Rings start at 2 KiB (at the first byte) and double: an interactive or idle connection stays small, a bulk one
    // reaches its limit in a few doublings.
    this.sendBuf = new ByteRing(cfg.sendBufferLimit, INITIAL_RING);
    // Slack of one scale unit: a window rounded up to the scale granularity never overruns the ring.
    this.rcvBuf = new ByteRing(cfg.recvBufferLimit + (1 << this.rcvScale), INITIAL_RING);
    this.ooo = new OooBlocks(cfg.maxOooBlocks);
    this.rtt = new RttEstimator(cfg.initialRtoMs, cfg.minRtoMs, cfg.maxRtoMs);
    this.cc = new NewReno(this.sndMss);
    this.out = {
      srcPort: this.localPort,
      dstPort: this.remotePort,
      seq: 0,
      ack: 0,
      flags: 0,
      window: 0,
      urgent: 0,
      payload: new Uint8Array(0),
    };
  }

  /** A buffer of at least one segment for sends that straddle the send ring's wrap point. */
  scratch = (): Uint8Array => (this.#scratch ??= new Uint8Array(this.cfg.mss));

  /** Sequence number one past the owner's last written byte. */
  get dataEnd(): number {
    return seqAdd(this.sndBufSeq, this.sendBuf.length);
  }

  /** Our FIN has been sent (it sits at `dataEnd`). */
  get finSent(): boolean {
    return this.finQueued && ((this.sndMax - this.dataEnd) | 0) > 0;
  }

  /** The current deadline of the earliest timer. */
  nextDeadline(): number {
    return Math.min(this.rtxAt, this.persistAt, this.ackAt, this.keepAt, this.closeAt);
  }

  stopTimers(): void {
    this.rtxAt =
      this.persistAt =
      this.ackAt =
      this.keepAt =
      this.closeAt =
        NEVER;
  }

  /**
   * The one place the state changes. Each arm lists the transitions RFC 9293's diagram (section 3.3.2) allows
   * from that state; anything else is a bug in this module and throws.
   */
  setState(next: TcpState, why: string): void {
    const from = this.state;
    let ok: boolean;
    switch (from) {
      case "CLOSED":
        ok = false;
        break;
      case "SYN-HELD": // tp's deferred LISTEN: accept() or refuse()/RST/timeout
        ok = next === "SYN-RECEIVED" || next === "CLOSED";
        break;
      case "SYN-SENT": // 3.10.7.3: SYN-ACK, simultaneous SYN, RST, timeout
        ok = next === "ESTABLISHED" || next === "SYN-RECEIVED" || next === "CLOSED";
        break;
      case "SYN-RECEIVED": // 3.10.7.4: ACK of our SYN; FIN; RST
        ok = next === "ESTABLISHED" || next === "CLOSE-WAIT" || next === "CLOSED";
        break;
      case "ESTABLISHED": // 3.10.4 CLOSE; 3.10.7.4 eighth (FIN)
        ok = next === "FIN-WAIT-1" || next === "CLOSE-WAIT" || next === "CLOSED";
        break;
      case "FIN-WAIT-1": // our FIN acknowledged; simultaneous close
        ok = next === "FIN-WAIT-2" || next === "CLOSING" || next === "CLOSED";
        break;
      case "FIN-WAIT-2":
        ok = next === "TIME-WAIT" || next === "CLOSED";
        break;
      case "CLOSE-WAIT":
        ok = next === "LAST-ACK" || next === "CLOSED";
        break;
      case "CLOSING":
        ok = next === "TIME-WAIT" || next === "CLOSED";
        break;
      case "LAST-ACK":
        ok = next === "CLOSED";
        break;
      case "TIME-WAIT":
        ok = next === "CLOSED";
        break;
      default: {
        const never: never = from;
        throw new TypeError(`Unknown TCP state "${never}"`);
      }
    }
    if (!ok) throw new TypeError(`Illegal TCP transition ${from}=>${next} (${why})`);
    this.cfg.log?.(`tcp ${this.localPort}<-${this.remotePort} ${from}=>${next} (${why})`);
    this.state = next;
    if (next === "CLOSED") {
      this.stopTimers();
      this.events |= TcpEvent.Closed;
    }
  }

  /** Ends the connection abnormally. */
  fail(error: TcpError, why: string): void {
    this.error ??= error;
    this.events |= TcpEvent.Reset;
    this.setState("CLOSED", why);
  }
}
